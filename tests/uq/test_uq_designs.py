"""UQ replicas crossed with issue 21's designs: a point's replicas combine per test set
(the same fold of the same repeat, the same tree node), never across them (that raised
"members were evaluated on different test sets"); a tree's from-scratch baselines are
left out of its UQ rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from candle.plan.jobs import iter_jobs
from candle.spec import load_sweep
from candle.store import RunStore
from candle.supervisor.run import run_meta
from candle.uq.predictions import Predictions, save
from candle.uq.summary import summarise_uq
from tests.conftest import write

BASE = """
name: {name}
benchmark: "m:f"
search: {{method: list, points: [{{x: 1}}], metric: val_loss}}
uq: {{replicas: 2}}
"""


def run_with_predictions(tmp_path: Path, name: str, extra: str) -> tuple[RunStore, int]:
    """Every done job gets predictions on a test set of its own size (so two test sets
    never match); returns the store and the samples one replica of each set saw."""
    sweep = load_sweep(write(tmp_path / f"{name}.yaml", BASE.format(name=name) + extra))
    store = RunStore(sweep.run_dir)
    jobs = list(iter_jobs(sweep))
    store.initialise(sweep.text, run_meta(sweep), jobs)
    sizes: dict[tuple[int, int | None, str | None, bool], int] = {}
    expected = 0
    for job in jobs:
        key = (job.repeat, job.fold, job.node, job.baseline)
        if key not in sizes:
            sizes[key] = 5 + len(sizes)
            expected += 0 if job.baseline else sizes[key]
        n = sizes[key]
        y = np.arange(n, dtype=np.float32)
        store.job_dir(job.id).mkdir(parents=True, exist_ok=True)
        save(store.job_dir(job.id), Predictions("regression", y, y + 0.1 * (job.replica + 1)))
        store.write_result(job.id, {"status": "done", "metrics": {"val_loss": 1.0}})
    return store, expected


def test_repeated_cv_replicas_combine_per_fold_and_repeat(tmp_path: Path) -> None:
    store, samples = run_with_predictions(tmp_path, "rep", "cv: {folds: 2, repeats: 2}\n")
    (row,) = summarise_uq(store)
    assert row.members == 2 and row.samples == samples and row.jobs == 8


def test_tree_replicas_combine_per_node_without_baselines(tmp_path: Path) -> None:
    store, samples = run_with_predictions(
        tmp_path, "tree", "stages: {depth: 2, children: 2, baseline: true}\n")
    (row,) = summarise_uq(store)
    assert row.members == 2 and row.samples == samples and row.jobs == 12  # 6 nodes x 2
