"""A user model joins UQ by returning its test-set predictions; `candle summary` then
combines its replicas like a built-in benchmark's (checked against reference.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from candle.store import RunStore
from tests.conftest import run_candle, write
from tests.uq import reference

MODEL = '''
import numpy as np


def objective(params):
    rng = np.random.default_rng(params["seed"])
    y = np.linspace(-1.0, 1.0, 50)
    mean = y + rng.normal(0.0, params["noise"], 50)
    return {"val_loss": float(np.mean((mean - y) ** 2)),
            "predictions": {"kind": "regression", "y_true": y, "mean": mean}}
'''


def test_user_model_predictions_make_an_ensemble(tmp_path: Path) -> None:
    write(tmp_path / "model.py", MODEL)
    doc = {"name": "um", "benchmark": "model:objective",
           "search": {"method": "grid", "space": {"noise": [0.1, 0.4]}, "metric": "val_loss"},
           "uq": {"method": "ensemble", "replicas": 4},
           "resources": {"scheduler": "local", "max_concurrent": 2}, "store": "runs"}
    run_candle("run", str(write(tmp_path / "s.yaml", json.dumps(doc))))
    store = RunStore(tmp_path / "runs" / "um")
    rows = {r["params"]["noise"]: r
            for r in json.loads(run_candle("summary", str(store.root), "--format",
                                           "json").stdout)}
    for noise, row in rows.items():
        members = []
        for job in store.jobs():
            if job.point_params["noise"] == noise:
                with np.load(store.job_dir(job.id) / "predictions.npz") as data:
                    members.append(data["mean"].tolist())
                    y = data["y_true"].tolist()
        assert len(members) == 4
        expected = reference.regression(y, members)
        for name, value in expected.items():
            assert row["uq"]["metrics"][name] == pytest.approx(value, rel=1e-5), name
    # more noise between members: a wider spread
    assert rows[0.4]["uq"]["metrics"]["spread"] > rows[0.1]["uq"]["metrics"]["spread"]
    csv = run_candle("summary", str(store.root), "--format", "csv").stdout.splitlines()
    assert "uq_coverage_95" in csv[0] and len(csv) == 3


def test_an_optuna_search_shows_each_trials_ensemble(tmp_path: Path) -> None:
    write(tmp_path / "model.py", MODEL)
    doc = {"name": "opt", "benchmark": "model:objective",
           "search": {"method": "optuna", "trials": 3, "seed": 1, "metric": "val_loss",
                      "space": {"noise": {"uniform": [0.1, 0.5]}}},
           "uq": {"method": "ensemble", "replicas": 2},
           "resources": {"scheduler": "local", "max_concurrent": 2}, "store": "runs"}
    run_candle("run", str(write(tmp_path / "s.yaml", json.dumps(doc))))
    table = run_candle("summary", str(tmp_path / "runs" / "opt")).stdout
    uq_part = table[table.index("UQ (ensemble)"):]
    assert uq_part.count("│ 2       │ 50") == 3  # 3 trials, each 2 members x 50 samples
