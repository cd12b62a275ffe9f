"""Cross-validation: each point's metric per fold (replicas and, repeated CV, repeats
averaged), mean ± std over folds, and where the fold assignment the jobs used is saved
(``cv/folds-<digest>.npy``, and since issue 21 a readable ``.csv`` beside it)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from candle.spec.model import direction_sign
from candle.state import JobState
from candle.store.run_store import RunStore


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


Results = Mapping[str, "dict[str, Any] | None"]  # job id -> result.json, read once


@dataclass
class FoldRow:
    point: int
    params: dict[str, Any]
    values: list[float | None]  # one per fold: the fold's replicas' mean; None if none done
    mean: float | None
    std: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "params": self.params, "folds": self.values,
                "mean": self.mean, "std": self.std}


@dataclass
class FoldTable:
    metric: str
    direction: str
    folds: int
    rows: list[FoldRow]  # best mean first
    assignments: list[str]  # run-relative files holding the fold of each sample
    repeats: int = 1  # repeated CV: each fold's value is the mean over this many draws
    tables: list[str] = field(default_factory=list)  # the readable .csv of those that have one

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "folds": self.folds, "repeats": self.repeats,
                "assignments": self.assignments, "tables": self.tables,
                "rows": [r.to_dict() for r in self.rows]}


@dataclass
class Tally:
    """One pass over a run's jobs and results: what the summary and the CV table count.
    (Both read it: at 10^5 jobs each pass over them is a tenth of a second.)"""

    params: dict[int, dict[str, Any]]  # point -> its params, in plan order
    values: dict[int, list[float]]  # point -> every done job's finite metric
    failed: dict[int, int]  # failed, timed out, or done without a finite metric
    pending: dict[int, int]  # not finished: pending or running
    per_fold: dict[int, dict[int, list[float]]]  # point -> fold -> its replicas' metrics
    assignments: set[str]  # the fold-assignment files the done jobs name


def tally(store: RunStore, results: Results, metric: str,
          skip: frozenset[str] = frozenset()) -> Tally:
    """``skip``: job ids left out (a leave-out tree's from-scratch baselines)."""
    out = Tally({}, defaultdict(list), defaultdict(int), defaultdict(int),
                defaultdict(lambda: defaultdict(list)), set())
    done = JobState.DONE.value
    plan = store.plan()
    params, values, failed, pending = out.params, out.values, out.failed, out.pending
    for index, (job_id, point, fold) in enumerate(zip(plan.ids, plan.points, plan.folds,
                                                      strict=True)):
        if point not in params:
            params[point] = plan.point_params(index)
        if job_id in skip:
            continue
        result = results.get(job_id)
        if result is None:
            pending[point] += 1
            continue
        if result.get("status") != done:
            failed[point] += 1
            continue
        value = result.get("metrics", {}).get(metric)
        if not (isinstance(value, int | float) and math.isfinite(value)):
            failed[point] += 1
            continue
        values[point].append(float(value))
        if fold is not None:
            out.per_fold[point][fold].append(float(value))
            assignment = result.get("fold_assignment")
            if isinstance(assignment, str):
                out.assignments.add(assignment)
    return out


def fold_table(store: RunStore, counted: Tally, repeats: int = 1) -> FoldTable | None:
    """None when the run does not cross-validate; ``counted``: the summary's tally (a
    fold's jobs of every repeat in one list: fold f of each draw, averaged)."""
    manifest = store.manifest()
    folds = manifest.folds
    if not folds:
        return None
    metric, direction = manifest.metric, manifest.direction
    rows = []
    for point, point_params in counted.params.items():
        by_fold = counted.per_fold.get(point, {})
        per_fold: list[float | None] = [
            sum(v) / len(v) if (v := by_fold.get(f)) else None for f in range(folds)]
        done = [v for v in per_fold if v is not None]
        mean, std = mean_std(done) if done else (None, None)
        rows.append(FoldRow(point, point_params, per_fold, mean, std))
    sign = direction_sign(direction)
    rows.sort(key=lambda r: (r.mean is None, sign * (r.mean or 0.0), r.point))
    assignments = sorted(counted.assignments)
    return FoldTable(metric, direction, folds, rows, assignments, repeats,
                     readable_tables(store.root, assignments))


def readable_tables(root: Path, assignments: list[str]) -> list[str]:
    """The ``.csv`` beside each ``.npy`` fold assignment that has one (a stat per file:
    a run has a few, one per distinct split)."""
    found = []
    for name in assignments:
        table = str(Path(name).with_suffix(".csv"))
        if table != name and (root / table).is_file():
            found.append(table)
    return found
