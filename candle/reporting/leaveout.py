"""Leave-out trees (``stages:``): each point's metric per stage, transfer vs from scratch.

A tree's node at stage s validates on the part it leaves out, so stage s's numbers say how
the model does on data one level further from what it trained on. Transfer nodes (stage 1,
or a parent set) start from their parent's weights; baseline nodes (below stage 1, no
parent) are the same nodes trained from scratch. The difference of the two at a stage is
what the transfer bought, signed in the metric's direction so nobody has to remember
whether lower is better."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from candle.plan.jobs import Job
from candle.reporting.cells import Cell, cell, finite_metric
from candle.spec.model import direction_sign

TRANSFER, BASELINE, TIE = "transfer", "baseline", "tie"


@dataclass
class StageRow:
    stage: int
    transfer: Cell  # the stage's transfer nodes x replicas
    baseline: Cell | None  # its from-scratch twins; None: the run trains none at this stage
    diff: float | None = None  # transfer mean - baseline mean (raw)
    better: str | None = None  # transfer | baseline | tie, by the metric's direction

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "transfer": self.transfer.to_dict(),
                "baseline": None if self.baseline is None else self.baseline.to_dict(),
                "diff": self.diff, "better": self.better}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageRow:
        baseline = data["baseline"]
        return cls(int(data["stage"]), Cell.from_dict(data["transfer"]),
                   None if baseline is None else Cell.from_dict(baseline),
                   data["diff"], data["better"])


def stage_rows(jobs: Iterable[Job], results: Mapping[str, Mapping[str, Any] | None],
               metric: str, direction: str) -> dict[int, list[StageRow]]:
    """point -> its stages in order; empty when no job is a tree node."""
    # point -> stage -> (values, planned), for transfer and baseline nodes apart
    found: dict[bool, dict[int, dict[int, tuple[list[float], list[int]]]]] = {
        False: defaultdict(dict), True: defaultdict(dict)}
    for job in jobs:
        if job.node is None:
            continue
        stages = found[job.baseline][job.point]
        values, planned = stages.setdefault(job.stage, ([], [0]))
        planned[0] += 1
        value = finite_metric(results.get(job.id), metric)
        if value is not None:
            values.append(value)
    sign = direction_sign(direction)
    out: dict[int, list[StageRow]] = {}
    for point, stages in found[False].items():
        baselines = found[True].get(point, {})
        rows = []
        for stage in sorted(stages.keys() | baselines.keys()):
            values, planned = stages.get(stage, ([], [0]))
            row = StageRow(stage, cell(values, planned[0]), None)
            if stage in baselines:
                values, planned = baselines[stage]
                row.baseline = cell(values, planned[0])
                _compare(row, sign)
            rows.append(row)
        out[point] = rows
    return out


def _compare(row: StageRow, sign: float) -> None:
    transfer, baseline = row.transfer.mean, row.baseline.mean if row.baseline else None
    if transfer is None or baseline is None:
        return
    row.diff = transfer - baseline
    gain = sign * row.diff  # < 0: transfer is better in the metric's direction
    row.better = TRANSFER if gain < 0 else BASELINE if gain > 0 else TIE
