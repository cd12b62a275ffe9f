"""The public API for model code: a user's Benchmark, named in a sweep as ``module:NAME``,
gets the same located checks as a built-in, and its training runs like a built-in's."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import candle
import candle.api
from candle.errors import UserError
from candle.job.runner import train_job
from candle.spec import load_sweep
from tests.conftest import write

MODEL = '''
from candle.api import Benchmark, Param

BENCHMARK = Benchmark(
    name="mine", description="a user's benchmark",
    params=(Param("epochs", "int", 2, "epochs"),
            Param("learning_rate", "float", 0.1, "step size"),
            Param("optimizer", "str", "sgd", "optimizer", ("sgd", "adam"))),
    runner="api_user_model", metrics=("val_loss",))


def train(params, ctx):
    return {"metrics": {"val_loss": params["learning_rate"] * params["epochs"]}}
'''


@pytest.fixture(autouse=True)
def _forget_the_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the sweep's folder goes first
    yield
    sys.modules.pop("api_user_model", None)


def _sweep(tmp_path: Path, body: str) -> Path:
    write(tmp_path / "api_user_model.py", MODEL)
    return write(tmp_path / "sweep.yaml", "name: x\nbenchmark: 'api_user_model:BENCHMARK'\n" + body)


@pytest.mark.parametrize(("body", "line", "key", "words"), [
    ("params:\n  lernrate: 0.1\n", 4, "params.lernrate",
     "benchmark mine has no parameter 'lernrate'; did you mean 'learning_rate'?"),
    ("params:\n  epochs: many\n", 4, "params.epochs", "expected an integer"),
    ("params:\n  optimizer: lbfgs\n", 4, "params.optimizer", "expected one of sgd, adam"),
    ("search:\n  metric: val_los\n", 4, "search.metric",
     "benchmark mine does not report 'val_los'; did you mean 'val_loss'?"),
])
def test_a_user_benchmark_is_checked_like_a_builtin(tmp_path: Path, body: str, line: int,
                                                    key: str, words: str) -> None:
    with pytest.raises(UserError) as caught:
        load_sweep(_sweep(tmp_path, body))
    assert (caught.value.line, caught.value.key) == (line, key)
    assert words in str(caught.value)


def test_a_user_benchmark_coerces_params_and_trains_with_its_defaults(tmp_path: Path) -> None:
    sweep = load_sweep(_sweep(tmp_path, "params:\n  learning_rate: 1\n"))
    assert sweep.params == {"learning_rate": 1.0}
    ctx = candle.api.TrainContext(job_dir=tmp_path, seed=0)
    outcome = train_job(sweep.benchmark, sweep.params, ctx, sweep.base_dir)
    assert outcome == {"metrics": {"val_loss": 2.0}}


def test_a_name_that_is_no_benchmark_is_a_located_error(tmp_path: Path) -> None:
    path = _sweep(tmp_path, "")
    path.write_text(path.read_text().replace("BENCHMARK", "MISSING"))
    with pytest.raises(UserError, match="found nothing, not a candle") as caught:
        load_sweep(path)
    assert (caught.value.line, caught.value.key) == (2, "benchmark")


def test_model_code_finds_everything_in_candle_api() -> None:
    for name in candle.api.__all__:
        assert getattr(candle.api, name) is not None
    assert candle.report is candle.api.report and candle.Pruned is candle.api.Pruned
