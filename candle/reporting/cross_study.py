"""Test sets the model never trained on: a held-out test set (``cv.holdout``: metric
``test_<m>``) and, cross-study, each target study (``test_<STUDY>_<m>``), where ``m`` is the
sweep metric without its ``val_`` prefix. They are shown apart from the CV metric: a
validation fold steers the search, these only measure it.

Read from the slim results the summary already holds. A run is taken to have such
metrics when its first done result has any ``test_`` key (every job of a run reports the
same design), so an ordinary run pays one dict scan, not one per job."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from candle.reporting.cells import Cell, base_metric, cell, finite_metric
from candle.state import JobState

PREFIX = "test_"


@dataclass
class PointHeldOut:
    holdout: Cell | None = None  # test_<m>: the held-out test set
    studies: dict[str, Cell] = field(default_factory=dict)  # study -> test_<STUDY>_<m>

    def to_dict(self) -> dict[str, Any]:
        return {"holdout": None if self.holdout is None else self.holdout.to_dict(),
                "studies": {s: c.to_dict() for s, c in self.studies.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointHeldOut:
        holdout = data["holdout"]
        return cls(None if holdout is None else Cell.from_dict(holdout),
                   {s: Cell.from_dict(c) for s, c in data["studies"].items()})


@dataclass
class HeldOutSets:
    holdout: str | None  # the held-out metric's name (test_mse), None: no holdout
    studies: dict[str, str]  # study -> its metric's name (GDSC -> test_GDSC_mse), in order
    points: dict[int, PointHeldOut]


def held_out_keys(metric: str, keys: Sequence[str],
                  order: Sequence[str] = ()) -> tuple[str | None, dict[str, str]]:
    """Which of ``keys`` are the held-out metric and each study's for ``metric``; the
    studies in ``order`` (the sweep's test_studies) first, then any other by name."""
    base = base_metric(metric)
    holdout = PREFIX + base
    suffix = "_" + base
    studies = {}
    for key in keys:
        if key.startswith(PREFIX) and key.endswith(suffix) and key != holdout:
            study = key[len(PREFIX):-len(suffix)]
            if study:
                studies[study] = key
    rank = {study: i for i, study in enumerate(order)}
    ordered = sorted(studies.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    return (holdout if holdout in keys else None), dict(ordered)


def held_out_sets(ids: Sequence[str], points: Sequence[int],
                  results: Mapping[str, Mapping[str, Any] | None], metric: str,
                  order: Sequence[str] = ()) -> HeldOutSets | None:
    """Each point's test-set metrics over its jobs (folds x replicas); None when the run
    reports none. ``ids`` and ``points``: the plan's columns, in plan order; ``order``:
    the studies' (held_out_keys)."""
    keys = _first_done_keys(ids, results)
    if not any(k.startswith(PREFIX) for k in keys):
        return None
    seen: set[str] = set()
    for job_id in ids:  # the metric names of every done job: a study a first job lacked
        result = results.get(job_id)
        if result is not None and result.get("status") == JobState.DONE.value:
            seen.update(result.get("metrics") or ())
    holdout, studies = held_out_keys(metric, sorted(seen), order)
    if holdout is None and not studies:
        return None
    wanted = ([holdout] if holdout else []) + list(studies.values())
    values: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    totals: dict[int, int] = defaultdict(int)
    for job_id, point in zip(ids, points, strict=True):
        totals[point] += 1
        result = results.get(job_id)
        for key in wanted:
            value = finite_metric(result, key)
            if value is not None:
                values[point][key].append(value)
    out = HeldOutSets(holdout, studies, {})
    for point, total in totals.items():
        found = values.get(point, {})
        held = PointHeldOut(cell(found.get(holdout, []), total) if holdout else None,
                           {s: cell(found.get(k, []), total) for s, k in studies.items()})
        out.points[point] = held
    return out


def _first_done_keys(ids: Sequence[str],
                     results: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    for job_id in ids:
        result = results.get(job_id)
        if result is not None and result.get("status") == JobState.DONE.value:
            metrics = result.get("metrics")
            if isinstance(metrics, Mapping) and metrics:
                return list(metrics)
    return []
