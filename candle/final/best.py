"""`candle best`: the best point of a run by its metric and direction (mean over folds and
replicas, as `candle summary` ranks them), with its params and every metric it reported."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from candle.errors import UserError
from candle.reporting.cv import mean_std
from candle.reporting.summary import summarise
from candle.state import JobState
from candle.store.run_store import RunStore


@dataclass(frozen=True)
class BestPoint:
    run: str
    point: int
    params: dict[str, Any]  # the point's own (varied) params
    metric: str
    direction: str
    mean: float
    std: float
    n: int  # finished jobs (folds x replicas) the mean is over
    metrics: dict[str, dict[str, float]]  # every reported metric: {mean, std, n}
    note: str = ""  # multi-objective: which objective decided

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metric_stats(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """{metric: {mean, std, n}} over the jobs (or members) that reported it."""
    stats: dict[str, dict[str, float]] = {}
    for name, reported in sorted(values.items()):
        mean, std = mean_std(reported)
        stats[name] = {"mean": mean, "std": std, "n": len(reported)}
    return stats


def best_point(store: RunStore, point: int | None = None) -> BestPoint:
    """The best point (or point ``point``) with its numbers; UserError when there is none."""
    store.require()
    manifest = store.manifest()
    results = store.results()  # the cached tables view (no histories needed here)
    summary = summarise(store, results)
    rows = [r for r in summary.rows if r.mean is not None]
    if point is not None:
        chosen = next((r for r in summary.rows if r.point == point), None)
        if chosen is None:
            raise UserError(f"no point {point} in this run (see `candle summary`)",
                            file=store.root)
        if chosen.mean is None:
            raise UserError(f"point {point} has no finished job with {summary.metric}",
                            file=store.root)
    elif not rows:
        raise UserError(f"no point has a finished job with {summary.metric} yet (see "
                        "`candle status`)", file=store.root)
    else:
        chosen = rows[0]
    per_metric: dict[str, list[float]] = defaultdict(list)
    for job in store.jobs():
        result = results.get(job.id)
        if job.point != chosen.point or not result or result.get("status") != JobState.DONE:
            continue
        for name, value in (result.get("metrics") or {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                per_metric[name].append(float(value))
    metrics = metric_stats(per_metric)
    notes = []
    if len(manifest.metrics) > 1:
        notes.append(f"a multi-objective search: best by its first objective "
                     f"({manifest.metric}); `candle summary` shows the Pareto front")
    if manifest.optuna is not None and point is None:
        notes.extend(_seeded_best(store))
    note = "; ".join(notes)
    assert chosen.mean is not None
    return BestPoint(str(store.root), chosen.point, dict(chosen.params), summary.metric,
                     summary.direction, chosen.mean, chosen.std or 0.0, chosen.n, metrics,
                     note)


def _seeded_best(store: RunStore) -> list[str]:
    """A study seeded from earlier results (search.seed_from) may rank a seeded trial best:
    it has no jobs (no models) here, so `candle best` names the best point trained here."""
    from candle.reporting.study_summary import summarise_study

    study = summarise_study(store, importances=False)
    return [f"the study's best trial {row.number} was {row.note.split(';')[0]} and has no "
            "jobs here; this is the best point trained in this run"
            for row in study.best if row.note.startswith("seeded")]
