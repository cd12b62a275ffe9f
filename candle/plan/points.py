"""Search points from a SearchSpec: grid (cartesian), random (seeded samples), list."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from typing import Any

from candle.spec.model import Choice, Dimension, IntRange, SearchSpec, Uniform

MAX_MISSES = 10_000


def grid_size(spec: SearchSpec) -> int:
    return math.prod(len(d.values) for d in spec.space.values() if isinstance(d, Choice))


def iter_points(spec: SearchSpec) -> Iterator[dict[str, Any]]:
    """Yield the search points lazily (a 10^4-point grid never sits in memory twice)."""
    if spec.method == "list":
        yield from (dict(p) for p in spec.points)
    elif spec.method == "grid":
        names = list(spec.space)
        axes = [_choice(spec.space[n]).values for n in names]
        for combo in itertools.product(*axes):
            yield dict(zip(names, combo, strict=True))
    elif spec.method == "random":
        yield from _random_points(spec)
    else:  # pragma: no cover - the spec parser rejects other methods
        raise ValueError(f"unknown search method {spec.method!r}")


def _choice(dim: Dimension) -> Choice:
    if not isinstance(dim, Choice):  # pragma: no cover - the spec parser rejects this
        raise TypeError("grid axes must be value lists")
    return dim


def _random_points(spec: SearchSpec) -> Iterator[dict[str, Any]]:
    """``trials`` distinct points; a small discrete space yields all it has, no more."""
    rng = random.Random(spec.seed)
    seen: set[str] = set()
    capacity = _capacity(spec)
    wanted = min(spec.trials, capacity) if capacity is not None else spec.trials
    attempts = misses = 0
    # A space that gave nothing new in MAX_MISSES draws in a row is spent (a narrow float
    # range rounds to a handful of values); without this, `trials: 1000000` over such a
    # range would draw 10^8 times before giving up.
    while len(seen) < wanted and attempts < 100 * wanted and misses < MAX_MISSES:
        attempts += 1
        point = {name: sample(dim, rng) for name, dim in spec.space.items()}
        key = json.dumps(point, sort_keys=True)
        if key in seen:
            misses += 1
            continue
        misses = 0
        seen.add(key)
        yield point


def _capacity(spec: SearchSpec) -> int | None:
    total = 1
    for dim in spec.space.values():
        if isinstance(dim, Choice):
            total *= len(dim.values)
        elif isinstance(dim, IntRange):
            total *= (dim.high - dim.low) // dim.step + 1
        elif isinstance(dim, Uniform) and dim.low == dim.high:
            continue  # one value
        else:
            return None
    return total


def sample(dim: Dimension, rng: random.Random) -> Any:
    """One draw from ``dim``. Floats are rounded to 6 significant digits for readable ids."""
    if isinstance(dim, Choice):
        return dim.values[rng.randrange(len(dim.values))]
    if isinstance(dim, Uniform):
        if dim.log:
            value = math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))
        else:
            value = rng.uniform(dim.low, dim.high)
        return float(f"{value:.6g}")
    if isinstance(dim, IntRange):
        if dim.log:
            raw = math.exp(rng.uniform(math.log(dim.low), math.log(dim.high + 1)))
            value = min(dim.high, int(raw))
        else:
            value = rng.randint(dim.low, dim.high)
        return dim.low + (value - dim.low) // dim.step * dim.step
    raise TypeError(f"unknown dimension {dim!r}")  # pragma: no cover
