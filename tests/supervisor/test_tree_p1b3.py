"""Issue 21 end to end with real TensorFlow training: P1B3's leave-out tree (each child
starts from its parent's best weights: the checksum of what it loaded is the checksum of
what its parent saved) and a cross-study run (one metric per target study in
`candle summary`), through the real `candle run`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from candle.store import RunStore
from tests.conftest import run_candle

pytestmark = pytest.mark.slow

TINY = {"epochs": 3, "data": "synthetic", "cells": 12, "drugs": 10, "cell_features": 20,
        "drug_features": 10, "dense": [8], "batch_size": 32, "optimizer": "adam",
        "learning_rate": 0.01, "subsample": "none"}


def sweep(tmp_path: Path, name: str, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "name": name, "benchmark": "p1b3", "params": dict(TINY),
        "search": {"method": "list", "points": [{"dropout": 0.0}], "metric": "val_loss"},
        "resources": {"scheduler": "local", "max_concurrent": 2}, "store": "runs"}
    doc.update(over)
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(doc))
    return path


def saved_rows(store: RunStore, result: dict[str, Any]) -> list[dict[str, str]]:
    """The job's saved fold assignment, read back from its CSV."""
    table = store.root / str(result["fold_assignment"]).replace(".npy", ".csv")
    with table.open() as handle:
        return list(csv.DictReader(handle))


def saved_folds(store: RunStore, result: dict[str, Any]) -> dict[str, set[str]]:
    """Group -> the folds (levels) its samples are in, from the saved CSV."""
    folds: dict[str, set[str]] = {}
    for row in saved_rows(store, result):
        folds.setdefault(row["group"], set()).add(row["fold"])
    return folds


def test_a_p1b3_tree_child_starts_from_its_parents_best_weights(tmp_path: Path) -> None:
    path = sweep(tmp_path, "tree", cv={"seed": 2, "holdout": 0.2},
                 stages={"depth": 2, "children": 2, "split": "cell_drug", "epochs": "linear",
                         "baseline": True})
    proc = run_candle("run", str(path), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "tree")
    jobs = list(store.jobs())
    assert len(jobs) == 2 + 4 + 4
    results = {job.id: store.result(job.id) or {} for job in jobs}
    assert all(r.get("status") == "done" for r in results.values())
    for job in jobs:
        result = results[job.id]
        assert result["final_weights"]  # what a child of it would start from
        if job.parent is None:
            assert "init" not in result
            continue
        parent = results[job.parent]
        assert result["init_from"] == job.parent
        assert result["init"]["weights"] == parent["final_weights"]
        assert result["init"]["from"] == str(store.job_dir(job.parent) / parent["model_file"])
        assert result["history"]["loss"] and len(result["history"]["loss"]) <= 2  # linear
        # the node's readable split: its rows, their group and the level left out at
        levels = saved_folds(store, result)
        assert all(len(found) == 1 for found in levels.values())  # no pair straddles
        assert {"-1", "0", "1", "2"} <= set().union(*levels.values())
    summary = run_candle("summary", str(store.root), "--format", "json", timeout=300)
    assert summary.returncode == 0, summary.stderr
    (row,) = json.loads(summary.stdout)
    stages = {s["stage"]: s for s in row["stages"]}
    assert stages[1]["transfer"]["done"] == 2 and stages[2]["transfer"]["done"] == 4
    assert stages[2]["baseline"]["done"] == 4
    assert "test_loss" in results[jobs[0].id]["metrics"]  # the held-out set, never trained on


def test_p1b3_cross_study_reports_each_target_study(tmp_path: Path) -> None:
    params = {**TINY, "studies": ["CCLE", "GDSC", "CTRP"]}
    path = sweep(tmp_path, "cross", params=params,
                 cv={"train_studies": ["CCLE"], "test_studies": ["GDSC", "CTRP"]})
    proc = run_candle("run", str(path), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "cross")
    (job,) = store.jobs()
    metrics = (store.result(job.id) or {})["metrics"]
    assert {"test_GDSC_loss", "test_CTRP_loss", "val_loss"} <= set(metrics)
    summary = run_candle("summary", str(store.root), "--format", "json", timeout=300)
    (row,) = json.loads(summary.stdout)
    assert set(row["studies"]) == {"GDSC", "CTRP"}
    out = run_candle("summary", str(store.root), timeout=300).stdout
    assert "within CCLE" in out and "GDSC" in out


def test_grouped_repeated_cv_with_a_holdout_read_back_from_the_saved_csv(
        tmp_path: Path) -> None:
    """Folds grouped by drug, 2 repeats, 20% of the drugs held out: in every job's saved
    CSV no drug is in two folds, the held-out drugs are the same for every fold and repeat
    and never trained on (the job's training rows are exactly the other folds' rows)."""
    path = sweep(tmp_path, "grouped", params={**TINY, "epochs": 1},
                 cv={"folds": 2, "groups": "drug", "holdout": 0.2, "repeats": 2, "seed": 5})
    proc = run_candle("run", str(path), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "grouped")
    jobs = list(store.jobs())
    assert sorted((j.repeat, j.fold) for j in jobs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    held: set[str] = set()
    by_repeat: dict[int, dict[str, str]] = {}
    for job in jobs:
        result = store.result(job.id) or {}
        assert result.get("status") == "done", result
        fold_of = saved_folds(store, result)
        assert all(len(folds) == 1 for folds in fold_of.values())  # no drug straddles
        out = {group for group, folds in fold_of.items() if folds == {"-1"}}
        assert out and (not held or out == held)  # the same test set everywhere
        held = out
        by_repeat.setdefault(job.repeat, {}).update(
            {group: next(iter(folds)) for group, folds in fold_of.items()})
        rows = saved_rows(store, result)
        trained = sum(1 for row in rows if row["fold"] not in ("-1", str(job.fold)))
        assert result["train_samples"] == trained  # holdout rows never among them
        assert "test_loss" in result["metrics"]
    assert by_repeat[0] != by_repeat[1]  # each repeat draws its own folds
