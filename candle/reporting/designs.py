"""Issue 21's designs in a run's summary: the leave-out tree's stages, the held-out and
cross-study test sets, repeated CV's count of draws.

Which designs a run has is read from its job template in run.json (building a 10^5-job
plan's Jobs to look for tree nodes, ~0.2 s, would slow every ordinary summary). The test
sets are found from the results themselves (candle.reporting.cross_study)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from candle.reporting.cross_study import HeldOutSets, held_out_sets
from candle.reporting.cv import Results
from candle.reporting.leaveout import StageRow, stage_rows
from candle.store.run_store import RunStore


@dataclass(frozen=True)
class Planned:
    stages: bool = False  # a leave-out tree
    repeats: int = 1  # repeated CV's draws of the folds
    train_studies: tuple[str, ...] = ()  # cross-study: what "within-study" means
    test_studies: tuple[str, ...] = ()  # the order the sweep names its target studies in


def planned(store: RunStore) -> Planned:
    """The designs the run was planned with: its job template in run.json (a run from
    before issue 21 has none of them)."""
    template = store.manifest().template or {}
    settings = template.get("settings") or {}
    repeats = template.get("repeats", 1)
    return Planned(bool(template.get("stages")),
                   repeats if isinstance(repeats, int) and repeats > 1 else 1,
                   _names(settings.get("train_studies")), _names(settings.get("test_studies")))


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


@dataclass
class Found:
    """A run's design tables, for the summary to put into its rows."""

    held: HeldOutSets | None = None  # the held-out and cross-study test sets
    stages: dict[int, list[StageRow]] = field(default_factory=dict)  # point -> its stages
    planned: Planned = field(default_factory=Planned)


def find_designs(store: RunStore, results: Results, metric: str, direction: str) -> Found:
    """The design tables of the run (all empty for an ordinary run)."""
    plan = store.plan()
    design = planned(store)
    found = Found(held_out_sets(plan.ids, plan.points, results, metric,
                                design.test_studies), planned=design)
    if design.stages:
        found.stages = stage_rows(plan.jobs(), results, metric, direction)
    return found
