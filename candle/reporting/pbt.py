"""`candle summary` and `candle report` for population-based training (``search.method:
pbt``): the population (one row per member, not per segment job) and the best member's
hyperparameter schedule, read from ``<run>/pbt/lineage.jsonl`` alone (one read; no result
file is opened), and each member's score over epochs from its segments' histories (the
report's plots, which read the results anyway).

Lineage depth: the exploit events in the ancestry of a member's weights. Each segment
starts from one checkpoint (the ``from_job`` of the record that planned it, none for a
member's first segment); a segment planned by an exploit (``copied_from`` set) adds one.
Following those links back from the member's latest segment counts its own copies and,
through each, the source's copies before it; copies the member made earlier are not
counted, since their weights were replaced."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from candle.adaptive.pbt import START_EPOCH, PbtConfig, read_lineage
from candle.spec.model import direction_sign
from candle.store.run_store import RunStore

FINISHED, RUNNING, FAILED = "finished", "running", "failed"


@dataclass
class Segment:
    """One segment job of a member: epochs ``start``..``end`` with ``params``."""

    member: int
    job: str
    start: int
    end: int
    params: dict[str, Any]
    parent: str | None = None  # the job whose checkpoint it starts from
    copied_from: int | None = None  # the member it exploited when it was planned
    copied_epoch: int | None = None  # that member's epoch (its checkpoint's)
    score: float | None = None  # the metric at ``end``, once the segment is done

    def to_dict(self, names: tuple[str, ...]) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "job": self.job,
                "params": {n: self.params.get(n) for n in names},
                "copied_from": self.copied_from, "copied_epoch": self.copied_epoch,
                "score": _finite(self.score)}


@dataclass
class MemberRow:
    member: int
    score: float | None  # its "end" score, else its latest ready score
    epochs: int  # epochs trained (its latest ready or end point)
    state: str  # finished | running | failed
    depth: int  # exploit events in its weights' ancestry (module docstring)
    params: dict[str, Any]  # its current hyperparameters
    segments: list[Segment] = field(default_factory=list)
    best: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, "score": _finite(self.score), "epochs": self.epochs,
                "state": self.state, "depth": self.depth, "params": self.params,
                "best": self.best}


@dataclass
class PbtSummary:
    metric: str
    direction: str
    epochs: int  # what every member trains
    mutable: tuple[str, ...]  # the params a schedule shows
    rows: list[MemberRow]  # best first
    log: tuple[str, ...] = ()  # the params searched on a log scale (drawn on one)
    error: dict[int, str] = field(default_factory=dict)  # member -> its failure

    @property
    def best(self) -> MemberRow | None:
        return self.rows[0] if self.rows and self.rows[0].best else None

    def segments(self) -> list[Segment]:
        return [s for row in self.rows for s in row.segments]

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {"metric": self.metric, "direction": self.direction, "epochs": self.epochs,
                "population": [r.to_dict() for r in self.rows],
                "best": None if best is None else {
                    "member": best.member, "score": _finite(best.score),
                    "schedule": [s.to_dict(self.mutable) for s in best.segments]}}


def summarise_pbt(store: RunStore) -> PbtSummary:
    """The population and its schedules as the lineage has them now (a run still going
    shows its members' latest ready points)."""
    store.require()
    manifest = store.manifest()
    assert manifest.pbt is not None
    return summarise_lineage(read_lineage(store.root), PbtConfig.from_record(manifest.pbt))


def summarise_lineage(lineage: Iterable[Mapping[str, Any]], config: PbtConfig) -> PbtSummary:
    """The summary of these lineage records, in their order (apart from the store: tests
    and other readers give records directly)."""
    rows: dict[int, MemberRow] = {}
    by_job: dict[str, Segment] = {}
    summary = PbtSummary(config.metric, config.direction, config.epochs,
                         config.mutable or tuple(config.space), [],
                         tuple(n for n, d in config.space.items() if d.get("log")))
    for record in lineage:
        _apply(record, rows, by_job, config, summary.error)
    for row in rows.values():
        if row.segments:
            row.depth = _depth(row.segments[-1], by_job)
    summary.rows = _ranked(list(rows.values()), config.direction)
    return summary


def _apply(record: Mapping[str, Any], rows: dict[int, MemberRow], by_job: dict[str, Segment],
           config: PbtConfig, errors: dict[int, str]) -> None:
    """One lineage record into the members' rows and segments."""
    member, event = int(record["member"]), record["event"]
    epoch = int(record.get("epoch") or 0)
    if event == "start":
        row = rows[member] = MemberRow(member, None, 0, RUNNING, 0, dict(record["params"]))
        _add_segment(row, record, 0, None, None, by_job, config)
        return
    row = rows.get(member) or rows.setdefault(
        member, MemberRow(member, None, epoch, RUNNING, 0, {}))
    if event in ("ready", "end"):
        score = _float(record.get("score"))
        row.score, row.epochs = score, epoch
        done = by_job.get(str(record.get("done_job") or record.get("job")))
        if done is not None:
            done.score = score
    if event == "ready":
        row.params = dict(record["params_after"])
        source = record.get("copied_from")
        _add_segment(row, record, epoch, str(record["from_job"]),
                     None if source is None else int(source), by_job, config)
    elif event == "end":
        row.state = FINISHED
    elif event == "failed":
        row.state = FAILED
        errors[member] = str(record.get("error") or "")


def _add_segment(row: MemberRow, record: Mapping[str, Any], start: int, parent: str | None,
                 source: int | None, by_job: dict[str, Segment], config: PbtConfig) -> None:
    """The segment the record planned (its end from its job record when there is one)."""
    params = (record.get("job_record") or {}).get("params") or {}
    start = int(params.get(START_EPOCH, start))
    end = int(params.get("epochs", min(config.epochs, start + config.ready)))
    segment = Segment(row.member, str(record["job"]), start, end, dict(row.params), parent)
    if source is not None:
        segment.copied_from = source
        origin = by_job.get(parent or "")
        segment.copied_epoch = origin.end if origin is not None else start
    row.segments.append(segment)
    by_job[segment.job] = segment


def _depth(segment: Segment, by_job: Mapping[str, Segment]) -> int:
    """Exploit events along the checkpoints ``segment`` descends from."""
    depth, seen = 0, set()
    current: Segment | None = segment
    while current is not None and current.job not in seen:
        seen.add(current.job)
        depth += current.copied_from is not None
        current = by_job.get(current.parent) if current.parent else None
    return depth


def _ranked(rows: list[MemberRow], direction: str) -> list[MemberRow]:
    """Best score first (scores compared as they are, whatever epoch they are at); no
    score, or a non-finite one, last."""
    sign = direction_sign(direction)
    rows.sort(key=lambda r: (r.score is None or not math.isfinite(r.score),
                             sign * r.score if r.score is not None and math.isfinite(r.score)
                             else 0.0, r.member))
    if rows and rows[0].score is not None and math.isfinite(rows[0].score):
        rows[0].best = True
    return rows


def _finite(value: float | None) -> float | None:
    """A score as JSON can hold it (no NaN or infinity: None)."""
    return value if value is not None and math.isfinite(value) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


# -- the report's data -------------------------------------------------------------------
@dataclass
class MemberCurve:
    """A member's score per absolute epoch and the exploits that broke its line."""

    member: int
    pieces: list[tuple[list[int], list[float]]]  # one (epochs, values) per own stretch
    exploits: list[Exploit] = field(default_factory=list)


@dataclass
class Exploit:
    """Member ``member`` went on at ``epoch`` from ``source``'s checkpoint at
    ``source_epoch`` (score ``source_score``); ``after``: its first score afterwards."""

    member: int
    epoch: int
    source: int
    source_epoch: int
    source_score: float | None
    after: tuple[int, float] | None


def member_curves(summary: PbtSummary,
                  results: Mapping[str, Mapping[str, Any] | None]) -> list[MemberCurve]:
    """Each member's metric over epochs (best member first): its segments' histories at
    epochs start+1..end, or one point at the segment's end where a result has no history
    (the lineage's score). A new piece starts at every exploit."""
    scores = {s.job: s.score for s in summary.segments()}
    curves = []
    for row in summary.rows:
        curve = MemberCurve(row.member, [])
        for segment in row.segments:
            xs, ys = _segment_points(segment, results.get(segment.job), summary.metric)
            if segment.copied_from is not None or not curve.pieces:
                if segment.copied_from is not None:
                    curve.exploits.append(Exploit(
                        row.member, segment.start, segment.copied_from,
                        segment.copied_epoch if segment.copied_epoch is not None
                        else segment.start, scores.get(segment.parent or ""),
                        (xs[0], ys[0]) if xs else None))
                curve.pieces.append(([], []))
            curve.pieces[-1][0].extend(xs)
            curve.pieces[-1][1].extend(ys)
        curve.pieces = [p for p in curve.pieces if p[0]]
        if curve.pieces:
            curves.append(curve)
    return curves


def _segment_points(segment: Segment, result: Mapping[str, Any] | None,
                    metric: str) -> tuple[list[int], list[float]]:
    history = (result or {}).get("history")
    values = history.get(metric) if isinstance(history, Mapping) else None
    if isinstance(values, list) and values:
        points = [(segment.start + i + 1, float(v)) for i, v in enumerate(values)
                  if isinstance(v, int | float) and not isinstance(v, bool)]
        return [x for x, _ in points], [y for _, y in points]
    if segment.score is not None:
        return [segment.end], [segment.score]
    return [], []


def read_segment_results(store: RunStore, summary: PbtSummary) -> dict[str, dict[str, Any]]:
    """The whole results (with histories) of the segments that have one."""
    found = {}
    for segment in summary.segments():
        result = store.result(segment.job)
        if result is not None:
            found[segment.job] = result
    return found
