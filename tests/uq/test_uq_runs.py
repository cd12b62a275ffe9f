"""A real UQ run of each method (real `candle run`, real TensorFlow, small benchmarks):
the numbers `candle summary` prints are checked against the saved predictions, read
here with plain NumPy and combined by tests/uq/reference.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle.store import RunStore
from tests.conftest import run_candle, write
from tests.uq import reference

pytestmark = pytest.mark.slow

NT3 = {"features": 160, "samples": 160, "conv": [8, 20, 1, 8, 10, 1], "dense": [16, 8],
       "optimizer": "adam", "epochs": 3, "batch_size": 20, "dropout": 0.3}
P1B3 = {"cells": 24, "drugs": 16, "cell_features": 40, "drug_features": 20,
        "dense": [32, 16], "batch_size": 32, "epochs": 3, "optimizer": "adam"}


def run_sweep(tmp_path: Path, name: str, benchmark: str, params: dict[str, Any],
              uq: dict[str, Any], cv: dict[str, Any] | None = None) -> tuple[RunStore, list]:
    doc: dict[str, Any] = {
        "name": name, "benchmark": benchmark, "params": params,
        "search": {"method": "list", "points": [{"learning_rate": 0.003}],
                   "metric": "val_loss"},
        "uq": uq, "resources": {"scheduler": "local", "max_concurrent": 2}, "store": "runs"}
    if cv:
        doc["cv"] = cv
    path = write(tmp_path / f"{name}.yaml", json.dumps(doc))
    run_candle("run", str(path), timeout=600)
    store = RunStore(tmp_path / "runs" / name)
    rows = json.loads(run_candle("summary", str(store.root), "--format", "json").stdout)
    return store, rows


def saved(store: RunStore) -> dict[str, dict[str, Any]]:
    """Every job's predictions.npz, read directly."""
    out = {}
    for job in store.jobs():
        with np.load(store.job_dir(job.id) / "predictions.npz") as data:
            out[job.id] = {k: data[k] for k in data.files}
    return out


def assert_metrics(row: dict[str, Any], expected: dict[str, float]) -> None:
    got = row["uq"]["metrics"]
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_ensemble_with_a_heteroscedastic_p1b3(tmp_path: Path) -> None:
    store, rows = run_sweep(tmp_path, "ens", "p1b3", P1B3,
                            {"method": "ensemble", "replicas": 3, "loss": "heteroscedastic"})
    files = list(saved(store).values())
    assert len(files) == 3 and all(str(f["kind"]) == "regression" for f in files)
    y = files[0]["y_true"].astype(np.float64)
    means = [f["mean"].astype(np.float64) for f in files]
    sigmas = [f["sigma"].astype(np.float64) for f in files]
    assert all((s > 0).all() and np.isfinite(s).all() for s in sigmas)
    assert not np.allclose(means[0], means[1])  # replicas differ: their own seeds
    assert_metrics(rows[0], reference.regression(y.tolist(), [m.tolist() for m in means],
                                                 [s.tolist() for s in sigmas]))
    assert rows[0]["uq"]["members"] == 3 and rows[0]["uq"]["samples"] == len(y)


def test_bootstrap_nt3_resamples_each_replica(tmp_path: Path) -> None:
    store, rows = run_sweep(tmp_path, "boot", "nt3", NT3, {"method": "bootstrap", "replicas": 2})
    files = list(saved(store).values())
    labels = files[0]["y_true"].tolist()
    assert_metrics(rows[0], reference.classification(labels, [f["mean"].tolist() for f in files]))
    for job in store.jobs():
        record = (store.result(job.id) or {})["uq_training_set"]
        # n draws with replacement keep about 1 - 1/e = 63% of the rows
        assert 0.5 < record["distinct_rows"] / record["rows"] < 0.75, record


def test_mc_dropout_nt3_with_cv_folds(tmp_path: Path) -> None:
    store, rows = run_sweep(tmp_path, "mc", "nt3", NT3,
                            {"method": "mc_dropout", "replicas": 1, "samples": 4},
                            cv={"folds": 2, "seed": 3})
    files = saved(store)
    jobs = sorted(store.jobs(), key=lambda j: j.fold or 0)
    passes = [files[j.id]["samples"] for j in jobs]
    assert all(p.shape[0] == 4 for p in passes)
    assert all(p.std(axis=0).max() > 0 for p in passes)  # dropout was on at inference
    # folds hold disjoint samples: pool their passes (4 members per sample)
    labels = np.concatenate([files[j.id]["y_true"] for j in jobs]).tolist()
    pooled = np.concatenate(passes, axis=1)
    assert_metrics(rows[0], reference.classification(labels, pooled.tolist()))
    assert rows[0]["uq"]["members"] == 4
    # CV: the per-fold values are the jobs' metrics, and the saved assignment reproduces
    # each fold's held-out size
    assert rows[0]["folds"] == [store.result(j.id)["metrics"]["val_loss"] for j in jobs]
    names = {store.result(j.id)["fold_assignment"] for j in jobs}
    assert len(names) == 1
    assignment = np.load(store.root / names.pop())
    for j in jobs:
        assert (assignment == j.fold).sum() == len(files[j.id]["y_true"])
    table = run_candle("summary", str(store.root)).stdout
    assert "CV: val_loss per fold" in table and "cv/folds-" in table


def test_noise_levels_with_a_quantile_p1b3(tmp_path: Path) -> None:
    store, rows = run_sweep(tmp_path, "noise", "p1b3", P1B3,
                            {"method": "noise", "replicas": 2, "noise": "features",
                             "noise_levels": [0.0, 2.0], "loss": "quantile"})
    files = saved(store)
    by_point: dict[int, list[dict[str, Any]]] = {}
    for job in store.jobs():
        by_point.setdefault(job.point, []).append(files[job.id])
        assert store.result(job.id)["uq_training_set"]["level"] == job.params["uq_noise"]
    assert sorted(r["params"]["uq_noise"] for r in rows) == [0.0, 2.0]
    for row in rows:
        members = by_point[row["point"]]
        levels = members[0]["quantile_levels"].tolist()
        assert_metrics(row, reference.quantile_regression(
            members[0]["y_true"].tolist(), [m["quantiles"].tolist() for m in members],
            levels, median=2))
