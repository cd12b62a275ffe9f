"""Jobs = search points × CV folds × UQ replicas, each with a stable id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from candle.plan.points import grid_size, iter_points
from candle.spec.model import Sweep

REPLICA_SEED_STRIDE = 7919  # a prime, so replica seeds never collide with fold arithmetic


@dataclass(frozen=True)
class Job:
    """One training run. ``params`` are the sweep's fixed params overlaid by the point."""

    id: str
    point: int
    point_params: dict[str, Any]
    params: dict[str, Any]
    fold: int | None
    folds: int | None
    replica: int
    seed: int

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        return cls(**record)


def job_id(benchmark: str, params: dict[str, Any], fold: int | None, replica: int) -> str:
    """Hash of everything that makes the job what it is: same sweep, same ids."""
    canonical = json.dumps(
        {"benchmark": benchmark, "params": params, "fold": fold, "replica": replica},
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def count_points(sweep: Sweep) -> int:
    spec = sweep.search
    if spec.method == "grid":
        return grid_size(spec)
    if spec.method == "list":
        return len(spec.points)
    return sum(1 for _ in iter_points(spec))


def _base_seed(sweep: Sweep) -> int:
    """The sweep's rng_seed, else the benchmark's default, else the search seed."""
    if "rng_seed" in sweep.params:
        return int(sweep.params["rng_seed"])
    if not sweep.is_user_model:
        from benchmarks._base import get_benchmark

        return int(get_benchmark(sweep.benchmark).defaults().get("rng_seed", sweep.search.seed))
    return sweep.search.seed


def iter_jobs(sweep: Sweep) -> Iterator[Job]:
    """Jobs in a stable order: point-major, then fold, then replica."""
    folds: list[int | None] = list(range(sweep.cv.folds)) if sweep.cv else [None]
    replicas = sweep.uq.replicas if sweep.uq else 1
    base_seed = _base_seed(sweep)
    for index, point in enumerate(iter_points(sweep.search)):
        params = {**sweep.params, **point}
        for fold in folds:
            for replica in range(replicas):
                seed = base_seed + REPLICA_SEED_STRIDE * replica
                yield Job(
                    id=job_id(sweep.benchmark, params, fold, replica),
                    point=index,
                    point_params=point,
                    params=params,
                    fold=fold,
                    folds=sweep.cv.folds if sweep.cv else None,
                    replica=replica,
                    seed=seed,
                )
