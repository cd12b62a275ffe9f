"""`candle summary` for UQ runs: each point's replicas (and MC passes) combined per CV
fold, the folds' held-out predictions pooled, then the numbers of `candle.uq.metrics`."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from candle.state import JobState
from candle.store.run_store import RunStore
from candle.uq.metrics import Combined, combine, concat, uq_metrics
from candle.uq.predictions import Predictions
from candle.uq.predictions import load as load_predictions


@dataclass
class UQRow:
    """One search point (a noise level is a point too): its ensemble's numbers."""

    point: int
    params: dict[str, Any]
    kind: str  # regression | classification
    method: str  # ensemble | bootstrap | mc_dropout | noise
    members: int  # predictions combined per test sample (replicas, or replicas x passes)
    jobs: int  # jobs whose predictions went in
    samples: int  # test samples (all folds together)
    metrics: dict[str, float]
    calibration: list[tuple[float, float]]  # (expected, observed) for the calibration plot
    spreads: list[float] = field(repr=False, default_factory=list)  # per-sample uncertainty

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "params": self.params, "kind": self.kind,
                "method": self.method, "members": self.members, "jobs": self.jobs,
                "samples": self.samples,
                "metrics": {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()},
                "calibration": [list(p) for p in self.calibration]}


def summarise_uq(store: RunStore,
                 results: Mapping[str, dict[str, Any] | None] | None = None) -> list[UQRow]:
    """One row per point with saved predictions, in point order; [] when there are none.
    ``results``: the jobs' results when already read."""
    store.require()
    method = store.manifest().uq_method
    # A point's replicas of one test set combine: the same fold of the same repeat, or the
    # same node of a leave-out tree (its baselines, trained from scratch, are left out).
    groups: dict[int, dict[tuple[int, int, str], list[Predictions]]] = defaultdict(
        lambda: defaultdict(list))
    params: dict[int, dict[str, Any]] = {}
    jobs: dict[int, int] = defaultdict(int)
    for job in store.jobs():
        result = results.get(job.id) if results is not None else store.result(job.id)
        if result is None or result.get("status") != JobState.DONE:
            continue
        if job.baseline:
            continue
        saved = load_predictions(store.job_dir(job.id))
        if saved is None:
            continue
        groups[job.point][(job.repeat, -1 if job.fold is None else job.fold,
                           job.node or "")].append(saved)
        params.setdefault(job.point, job.point_params)
        jobs[job.point] += 1
    rows = []
    for point in sorted(groups):
        parts: list[Combined] = [combine(members) for _, members in
                                 sorted(groups[point].items())]
        pooled = concat(parts)
        metrics, curve = uq_metrics(pooled)
        rows.append(UQRow(point, params[point], pooled.kind, method, pooled.members,
                          jobs[point], len(pooled.y), metrics, curve,
                          [float(s) for s in pooled.sigma]))
    return rows
