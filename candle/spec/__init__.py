"""sweep.yaml → a validated, typed Sweep."""

from candle.spec.model import (
    Choice,
    CVSpec,
    IntRange,
    Resources,
    SearchSpec,
    Sweep,
    Uniform,
    UQSpec,
)
from candle.spec.parse import load_sweep

__all__ = [
    "CVSpec", "Choice", "IntRange", "Resources", "SearchSpec", "Sweep", "UQSpec", "Uniform",
    "load_sweep",
]
