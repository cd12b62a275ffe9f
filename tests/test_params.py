"""Precedence as candle_lib: defaults < --config < sweep params < point < --set."""

from __future__ import annotations

from pathlib import Path

import pytest

from candle.benchmark import get_benchmark
from candle.errors import UserError
from candle.params import parse_set, read_config_file, resolve
from tests.conftest import write

UPSTREAM_TXT = """
[Global_Params]
data_url = 'ftp://example/'
conv=[128, 20, 1, 128, 10, 1]
activation='relu'
learning_rate = 0.005
epochs=400
dropout=0.2
"""


def test_layers_override_in_order(tmp_path: Path) -> None:
    nt3 = get_benchmark("nt3")
    config = {"learning_rate": 0.005, "dropout": 0.2, "epochs": 400}
    sweep_params = {"dropout": 0.3, "epochs": 5}
    point = {"epochs": 7}
    sets = dict([parse_set("epochs=9")])
    params = resolve(nt3, [("cfg", config), ("sweep", sweep_params), ("point", point),
                           ("--set", sets)])
    assert params["learning_rate"] == 0.005  # config beats default 0.001
    assert params["dropout"] == 0.3  # sweep beats config
    assert params["epochs"] == 9  # --set beats point beats sweep
    assert params["batch_size"] == 20  # untouched default


def test_upstream_default_model_txt_is_read(tmp_path: Path) -> None:
    values = read_config_file(write(tmp_path / "nt3_default_model.txt", UPSTREAM_TXT))
    assert values["conv"] == [128, 20, 1, 128, 10, 1]
    assert values["learning_rate"] == 0.005 and values["activation"] == "relu"
    nt3 = get_benchmark("nt3")
    with pytest.raises(UserError, match="has no parameter 'data_url'"):
        resolve(nt3, [("nt3_default_model.txt", values)])


def test_set_values_are_typed() -> None:
    assert parse_set("dense=[100, 10]") == ("dense", [100, 10])
    assert parse_set("optimizer=adam") == ("optimizer", "adam")
    with pytest.raises(UserError, match="expected NAME=VALUE"):
        parse_set("epochs")
    with pytest.raises(UserError, match="expected an integer"):
        resolve(get_benchmark("nt3"), [("--set", {"epochs": "lots"})])
    one = resolve(get_benchmark("nt3"), [("--set", dict([parse_set("dense=8")]))])
    assert one["dense"] == [8]  # a single value for a list parameter is a one-element list
    with pytest.raises(UserError, match="expected a list of int"):
        resolve(get_benchmark("nt3"), [("--set", {"dense": {"a": 1}})])


def test_train_uses_config_then_set(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = write(tmp_path / "c.yaml", "features: 300\ndense: [7, 3]\n")
    result = cli("train", "nt3", "--config", str(config), "--set", "dense=[5,3]", "--summary")
    assert result.code == 0, result.err
    assert "dense" in result.out
    # Flatten of 300 features -> ((300-19)-9)//10 = 27 steps x 128 filters -> Dense(5)
    assert "(None, 5)" in result.out and "(None, 7)" not in result.out
