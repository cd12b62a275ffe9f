"""write_synthetic: upstream file formats that the real loaders read back unchanged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle.benchmark import get_benchmark
from candle_benchmarks.io import DataFileError, read_labelled_csv
from candle_benchmarks.synth_files import write_synthetic

LABELLED = {"nt3": ("nt_train2.csv", "nt_test2.csv"),
            "tc1": ("type_18_300_train.csv", "type_18_300_test.csv")}


def _params(benchmark: str, **extra: Any) -> dict[str, Any]:
    sizes: dict[str, dict[str, Any]] = {
        "nt3": {"features": 30, "samples": 50},
        "tc1": {"features": 30, "samples": 50, "classes": 5},
        "p1b3": {"cells": 6, "drugs": 5, "cell_features": 12, "drug_features": 7,
                 "concentrations": 3, "subsample": "none"},
    }
    return get_benchmark(benchmark).defaults() | sizes[benchmark] | extra


def _load_labelled(benchmark: str, params: dict[str, Any]) -> Any:
    if benchmark == "nt3":
        from candle_benchmarks.nt3 import data as nt3_data

        return nt3_data.load(params, None, None, 0, True, int(params["classes"]))
    from candle_benchmarks.tc1 import data as tc1_data

    return tc1_data.load(params, None, None, 0, True)


@pytest.mark.parametrize("benchmark", ["nt3", "tc1"])
def test_labelled_round_trip(tmp_path: Path, benchmark: str) -> None:
    params = _params(benchmark)
    paths = write_synthetic(benchmark, tmp_path, params)
    assert [p.name for p in paths] == list(LABELLED[benchmark])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(LABELLED[benchmark])  # no temps
    first = paths[0].read_text().splitlines()[0].split(",")
    assert len(first) == 31 and first[0].isdigit()  # integer label, no header
    x_train, _ = read_labelled_csv(paths[0])
    x_test, _ = read_labelled_csv(paths[1])
    assert x_train.shape == (40, 30) and x_test.shape == (10, 30)
    assert float(x_train.min()) > 0  # unscaled expression
    synthetic = _load_labelled(benchmark, params)
    from_files = _load_labelled(benchmark, params | {"data": str(tmp_path)})
    for name in ("x_train", "y_train", "x_val", "y_val"):
        assert np.array_equal(getattr(synthetic, name), getattr(from_files, name)), name


def test_p1b3_round_trip(tmp_path: Path) -> None:
    from candle_benchmarks.p1b3 import data as p1b3_data

    params = _params("p1b3")
    paths = write_synthetic("p1b3", tmp_path, params)
    assert [p.name for p in paths] == [p1b3_data.CELL_FILE, p1b3_data.DRUG_FILE,
                                       p1b3_data.RESPONSE_FILE]
    assert paths[0].read_text().startswith("CellLine\tGENE0\t")
    assert paths[1].read_text().startswith("NAME\tD0\t")
    assert paths[2].read_text().startswith("NSC,CELLNAME,LOG_CONCENTRATION,GROWTH\n")
    synthetic = p1b3_data.load(params, None, None, 0)
    from_files = p1b3_data.load(params | {"data": str(tmp_path)}, None, None, 0)
    assert from_files.cell_x.shape == (6, 12) and from_files.width == 1 + 12 + 7
    for name in ("cell_idx", "drug_idx", "log_conc", "y", "train_idx", "val_idx"):
        assert np.array_equal(getattr(synthetic, name), getattr(from_files, name)), name
    assert np.allclose(synthetic.cell_x, from_files.cell_x, atol=1e-5)
    assert np.allclose(synthetic.drug_x, from_files.drug_x, atol=1e-5)


def test_rewrite_replaces_files(tmp_path: Path) -> None:
    write_synthetic("tc1", tmp_path, _params("tc1"))
    write_synthetic("tc1", tmp_path, _params("tc1", samples=20))
    _, y = read_labelled_csv(tmp_path / "type_18_300_train.csv")
    assert len(y) == 16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_benchmark() -> None:
    with pytest.raises(KeyError):
        write_synthetic("p9x9", Path("."), {})


@pytest.mark.parametrize("benchmark", ["nt3", "tc1"])
def test_missing_labelled_file_is_named(tmp_path: Path, benchmark: str) -> None:
    params = _params(benchmark)
    write_synthetic(benchmark, tmp_path, params)
    (tmp_path / LABELLED[benchmark][1]).unlink()
    with pytest.raises(DataFileError, match=re.escape(f"{LABELLED[benchmark][1]}: no such file")):
        _load_labelled(benchmark, params | {"data": str(tmp_path)})


@pytest.mark.parametrize("benchmark", ["nt3", "tc1"])
def test_broken_labelled_files_are_named(tmp_path: Path, benchmark: str) -> None:
    params = _params(benchmark) | {"data": str(tmp_path)}
    train = tmp_path / LABELLED[benchmark][0]
    write_synthetic(benchmark, tmp_path, params)
    lines = train.read_text().splitlines()
    train.write_text("\n".join([*lines[:2], lines[2].rsplit(",", 1)[0], *lines[3:]]) + "\n")
    with pytest.raises(DataFileError, match=re.escape(f"{train}: ") + ".*[Ee]xpected 31 columns"):
        _load_labelled(benchmark, params)
    cells = lines[4].split(",")
    cells[3] = "oops"
    train.write_text("\n".join([*lines[:4], ",".join(cells), *lines[5:]]) + "\n")
    with pytest.raises(DataFileError) as err:
        _load_labelled(benchmark, params)
    assert str(err.value) == f"{train}: non-numeric value 'oops' at row 5, column 4"
