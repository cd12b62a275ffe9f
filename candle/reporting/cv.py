"""Cross-validation: each point's metric per fold (replicas averaged), mean ± std over
folds, and where the fold assignment the jobs used is saved."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
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

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "folds": self.folds, "assignments": self.assignments,
                "rows": [r.to_dict() for r in self.rows]}


def fold_table(store: RunStore, results: Results | None = None) -> FoldTable | None:
    """None when the run does not cross-validate. ``results``: already read (summarise)."""
    store.require()
    manifest = store.manifest()
    folds = manifest.folds
    if not folds:
        return None
    metric, direction = manifest.metric, manifest.direction
    values: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    params: dict[int, dict[str, Any]] = {}
    assignments: set[str] = set()
    for job in store.jobs():
        params.setdefault(job.point, job.point_params)
        result = results.get(job.id) if results is not None else store.result(job.id)
        if result is None or result.get("status") != JobState.DONE or job.fold is None:
            continue
        if isinstance(result.get("fold_assignment"), str):
            assignments.add(result["fold_assignment"])
        value = result.get("metrics", {}).get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            values[job.point][job.fold].append(float(value))
    rows = []
    for point, point_params in params.items():
        per_fold: list[float | None] = [
            sum(v) / len(v) if (v := values[point].get(f)) else None for f in range(folds)]
        done = [v for v in per_fold if v is not None]
        mean, std = mean_std(done) if done else (None, None)
        rows.append(FoldRow(point, point_params, per_fold, mean, std))
    sign = direction_sign(direction)
    rows.sort(key=lambda r: (r.mean is None, sign * (r.mean or 0.0), r.point))
    return FoldTable(metric, direction, folds, rows, sorted(assignments))
