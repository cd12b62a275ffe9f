"""What `candle report` draws: each plot with how to make it, and each it cannot draw
with why (apart from page.py so the design sections can add theirs without a cycle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from matplotlib.figure import Figure


@dataclass
class Plot:
    name: str  # the PNG's file name
    title: str
    caption: str
    make: Callable[[], Figure]


@dataclass
class Skipped:
    title: str
    reason: str


@dataclass
class PlotPlan:
    plots: list[Plot] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
