"""A run's summary, kept while nothing it was made from changes (issue 18).

`candle summary` of an unchanged 10^5-job run then reads a few hundred kB instead of
tallying 10^5 results again. ``<run>/index/summary.json`` is derived, like the rest of
``index/``: keyed by RunStore.cache_key (run.json, plan.jsonl and the result cache's
generations: a new result anywhere makes a new key), written atomically by the reader that
computed it, ignored when its key or version differs, and safe to delete. UQ summaries are
not kept: they read each member's predictions, which the key does not cover.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from candle.reporting.cross_study import PointHeldOut
from candle.reporting.cv import FoldRow, FoldTable
from candle.reporting.leaveout import StageRow
from candle.reporting.summary import PointRow, Summary, summarise
from candle.store.atomic import atomic_write_text
from candle.store.run_store import RunStore

VERSION = 3  # 2: issue 21's designs (stages, held-out and cross-study sets, repeats);
# 3: a tree's stages carry the held-out test set, its point means pool no baselines
NAME = "summary.json"


def load(store: RunStore, key: str) -> Summary | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads((store.root / "index" / NAME).read_bytes())
        if data["version"] == VERSION and data["key"] == key:
            return _summary(data["summary"])
    return None


def save(store: RunStore, key: str, summary: Summary) -> None:
    """Keep ``summary`` under ``key`` (a read-only run directory keeps none)."""
    with contextlib.suppress(OSError):
        (store.root / "index").mkdir(exist_ok=True)
        atomic_write_text(store.root / "index" / NAME, json.dumps(
            {"version": VERSION, "key": key, "summary": _record(summary)},
            separators=(",", ":")))


def _record(summary: Summary) -> dict[str, Any]:
    table = summary.fold_table
    return {
        "metric": summary.metric, "direction": summary.direction,
        "rows": [[r.point, r.params, r.mean, r.std, r.n, r.failed, r.pending, r.best,
                  r.folds, _design(r)] for r in summary.rows],
        "fold_table": None if table is None else {
            "folds": table.folds, "assignments": table.assignments,
            "repeats": table.repeats, "tables": table.tables,
            "rows": [[r.point, r.params, r.values, r.mean, r.std] for r in table.rows]},
        "holdout_metric": summary.holdout_metric, "study_metrics": summary.study_metrics,
        "train_studies": summary.train_studies,
    }


def _design(row: PointRow) -> dict[str, Any] | None:
    """A row's issue-21 numbers (None for an ordinary run's row: nothing to keep)."""
    if row.repeats is None and row.stages is None and row.held_out is None:
        return None
    return {"repeats": row.repeats,
            "stages": None if row.stages is None else [s.to_dict() for s in row.stages],
            "held_out": None if row.held_out is None else row.held_out.to_dict()}


def _with_design(row: PointRow, design: dict[str, Any] | None) -> PointRow:
    if design is not None:
        row.repeats = design["repeats"]
        stages, held = design["stages"], design["held_out"]
        row.stages = None if stages is None else [StageRow.from_dict(s) for s in stages]
        row.held_out = None if held is None else PointHeldOut.from_dict(held)
    return row


def _summary(data: dict[str, Any]) -> Summary:
    rows = [_with_design(PointRow(point, params, mean, std, n, failed, pending, best,
                                  folds=folds), design)
            for point, params, mean, std, n, failed, pending, best, folds, design
            in data["rows"]]
    summary = Summary(data["metric"], data["direction"], rows,
                      holdout_metric=data["holdout_metric"],
                      study_metrics=data["study_metrics"],
                      train_studies=data["train_studies"])
    table = data["fold_table"]
    if table is not None:
        summary.fold_table = FoldTable(
            data["metric"], data["direction"], table["folds"],
            [FoldRow(*row) for row in table["rows"]], table["assignments"],
            table["repeats"], table["tables"])
        summary.fold_assignments = summary.fold_table.assignments
    return summary


def summarise_cached(store: RunStore) -> Summary:
    """`summarise(store)`, from ``index/summary.json`` where nothing changed since it was
    made (the result cache is refreshed first, so a new result is never missed)."""
    store.require()
    if store.manifest().uq:
        return summarise(store)
    store.statuses()  # the refresh: new results read, the cache's generations current
    key = store.cache_key()
    if key is not None and (kept := load(store, key)) is not None:
        return kept
    summary = summarise(store, store.cached_results(store.job_ids()))
    key = store.cache_key()  # loading the results may have rebuilt a shard
    if key is not None:
        save(store, key, summary)
    return summary
