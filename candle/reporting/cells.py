"""One table cell of the design tables (leave-out stages, held-out and cross-study test
sets): a mean ± std over the jobs that have a value, and how many of how many do, so a
reader sees at once whether a number stands on all its jobs or on a few."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from candle.reporting.cv import mean_std
from candle.state import JobState


@dataclass
class Cell:
    mean: float | None  # None: no job has a value yet
    std: float | None
    done: int  # jobs with a finite value
    total: int  # jobs planned

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "done": self.done, "total": self.total}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        return cls(data["mean"], data["std"], int(data["done"]), int(data["total"]))

    def text(self) -> str:
        """``mean ± std (done/total)``, or ``- (0/total)``."""
        value = "-" if self.mean is None else f"{self.mean:.4g} ± {self.std or 0.0:.2g}"
        return f"{value} ({self.done}/{self.total})"


def cell(values: list[float], total: int) -> Cell:
    if not values:
        return Cell(None, None, 0, total)
    mean, std = mean_std(values)
    return Cell(mean, std, len(values), total)


def finite_metric(result: Mapping[str, Any] | None, key: str) -> float | None:
    """``key`` of a done job's metrics when it is a finite number, else None (as the
    summary counts: a NaN is not a result)."""
    if result is None or result.get("status") != JobState.DONE.value:
        return None
    value = (result.get("metrics") or {}).get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def base_metric(metric: str) -> str:
    """The metric a test set reports for the sweep metric: ``val_mse`` -> ``mse``."""
    return metric[len("val_"):] if metric.startswith("val_") else metric
