"""User models: imported beside the sweep, called with params, dict or History returned."""

from __future__ import annotations

from pathlib import Path

import pytest

from candle.api import TrainContext
from candle.job.runner import execute, train_job
from candle.job.user_model import metrics_from
from candle.plan.jobs import Job
from tests.conftest import write


class FakeHistory:
    def __init__(self) -> None:
        self.history = {"loss": [3.0, 2.0, 1.0], "val_loss": [4.0, 3.0, 2.5]}


def test_history_last_epoch_counts() -> None:
    metrics, history = metrics_from(FakeHistory())
    assert metrics == {"loss": 1.0, "val_loss": 2.5}
    assert history["val_loss"] == [4.0, 3.0, 2.5]


def test_bad_return_type_is_explained() -> None:
    with pytest.raises(TypeError, match="dict of metrics or a Keras History"):
        metrics_from([1, 2])


def test_called_with_params_and_job_context(tmp_path: Path) -> None:
    write(tmp_path / "pkg_model.py", """
        def f(params):
            return {"score": params["x"] * 10 + params["fold"] + params["replica"] * 100,
                    "seed": params["seed"]}
    """)
    ctx = TrainContext(job_dir=tmp_path, seed=5, fold=1, folds=2, replica=2)
    out = train_job("pkg_model:f", {"x": 3}, ctx, tmp_path)
    assert out["metrics"] == {"score": 231.0, "seed": 5.0}


def test_missing_metric_fails_the_job_with_a_reason(tmp_path: Path) -> None:
    write(tmp_path / "other_model.py", "def f(params):\n    return {'loss': 1.0}\n")
    job = Job(id="j", point=0, point_params={}, params={}, fold=None, folds=None,
              replica=0, seed=1)
    result = execute(job, "other_model:f", tmp_path, tmp_path, metrics=("val_loss",))
    assert result["status"] == "failed"
    assert "did not report metric 'val_loss'; it reported loss" in result["error"]
