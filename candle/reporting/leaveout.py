"""Leave-out trees (``stages:``): each point's metric per stage, transfer vs from scratch.

A tree's node at stage s validates on the part it leaves out, so stage s's numbers say how
the model does on data one level further from what it trained on. Transfer nodes (stage 1,
or a parent set) start from their parent's weights; baseline nodes (below stage 1, no
parent) are the same nodes trained from scratch. The difference of the two at a stage is
what the transfer bought, signed in the metric's direction so nobody has to remember
whether lower is better.

That validation comparison flatters transfer: a stage-s node's left-out part is a part of
its parent's training rows, so a child started from its parent's weights has already seen
its own validation rows, and its from-scratch twin has not. The fair comparison is the
held-out test set (``cv.holdout``: rows no node ever trains on, each job's ``test_<m>``):
where the run reports it, every StageRow carries the same numbers for it (``held_out``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from candle.plan.jobs import Job
from candle.reporting.cells import Cell, base_metric, cell, finite_metric
from candle.spec.model import direction_sign

TRANSFER, BASELINE, TIE = "transfer", "baseline", "tie"
PREFIX = "test_"  # the held-out test set's metric: test_<m> (candle.reporting.cross_study)


@dataclass
class StageRow:
    stage: int
    transfer: Cell  # the stage's transfer nodes x replicas
    baseline: Cell | None  # its from-scratch twins; None: the run trains none at this stage
    diff: float | None = None  # transfer mean - baseline mean (raw)
    better: str | None = None  # transfer | baseline | tie, by the metric's direction
    # the same for the held-out test set's metric (test_<m>); None: the run holds none out
    held_out: StageRow | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"stage": self.stage, "transfer": self.transfer.to_dict(),
               "baseline": None if self.baseline is None else self.baseline.to_dict(),
               "diff": self.diff, "better": self.better}
        if self.held_out is not None:  # a tree without a held-out set: as before
            held = self.held_out.to_dict()
            del held["stage"]
            out["held_out"] = held
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageRow:
        baseline = data["baseline"]
        row = cls(int(data["stage"]), Cell.from_dict(data["transfer"]),
                  None if baseline is None else Cell.from_dict(baseline),
                  data["diff"], data["better"])
        held = data.get("held_out")
        if held is not None:
            row.held_out = cls.from_dict({**held, "stage": row.stage})
        return row


@dataclass
class _Found:
    """One stage's jobs of one kind (transfer or baseline) of one point."""

    values: list[float] = field(default_factory=list)  # the sweep metric's finite values
    held: list[float] = field(default_factory=list)  # test_<m>'s
    planned: int = 0


def holdout_metric(metric: str) -> str:
    """The held-out test set's metric for the sweep's: ``val_loss`` -> ``test_loss``."""
    return PREFIX + base_metric(metric)


def stage_rows(jobs: Iterable[Job], results: Mapping[str, Mapping[str, Any] | None],
               metric: str, direction: str) -> dict[int, list[StageRow]]:
    """point -> its stages in order; empty when no job is a tree node. Each row has
    ``held_out`` (the same numbers for test_<m>) when any node reports test_<m>."""
    held_key = holdout_metric(metric)
    # point -> stage -> what its jobs found, for transfer (False) and baseline (True) apart
    found: dict[bool, dict[int, dict[int, _Found]]] = {
        False: defaultdict(dict), True: defaultdict(dict)}
    any_held = False
    for job in jobs:
        if job.node is None:
            continue
        stage = found[job.baseline][job.point].setdefault(job.stage, _Found())
        stage.planned += 1
        result = results.get(job.id)
        value = finite_metric(result, metric)
        if value is not None:
            stage.values.append(value)
        value = finite_metric(result, held_key)
        if value is not None:
            stage.held.append(value)
            any_held = True
    sign = direction_sign(direction)
    out: dict[int, list[StageRow]] = {}
    for point, stages in found[False].items():
        baselines = found[True].get(point, {})
        rows = []
        for number in sorted(stages.keys() | baselines.keys()):
            transfer, baseline = stages.get(number, _Found()), baselines.get(number)
            row = _row(number, transfer.values, transfer.planned,
                       None if baseline is None else baseline.values,
                       0 if baseline is None else baseline.planned, sign)
            if any_held:
                row.held_out = _row(number, transfer.held, transfer.planned,
                                    None if baseline is None else baseline.held,
                                    0 if baseline is None else baseline.planned, sign)
            rows.append(row)
        out[point] = rows
    return out


def _row(stage: int, values: list[float], planned: int, twins: list[float] | None,
         twins_planned: int, sign: float) -> StageRow:
    row = StageRow(stage, cell(values, planned), None)
    if twins is not None:
        row.baseline = cell(twins, twins_planned)
        _compare(row, sign)
    return row


def _compare(row: StageRow, sign: float) -> None:
    transfer, baseline = row.transfer.mean, row.baseline.mean if row.baseline else None
    if transfer is None or baseline is None:
        return
    row.diff = transfer - baseline
    gain = sign * row.diff  # < 0: transfer is better in the metric's direction
    row.better = TRANSFER if gain < 0 else BASELINE if gain > 0 else TIE
