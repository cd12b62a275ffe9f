"""Jobs = search points × CV folds × UQ replicas, each with a stable id.

A job's id is a hash of everything that changes what it computes: the benchmark (and, for
a built-in, its computation version), the resolved parameters, the fold and how the folds
are drawn (count, seed, stratification), the replica and the seed it trains with, the UQ
method and its options, and the number of ranks (Horovod shards the data and scales the
learning rate by it). Change any of them and the job is a new job: a result is never
reused under settings it was not computed with."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from candle.benchmark import find_benchmark
from candle.plan.points import grid_size, iter_points
from candle.spec.model import NOISE_PARAM, Sweep

REPLICA_SEED_STRIDE = 7919  # a prime, so replica seeds never collide with fold arithmetic
# Version of what job ids hash. 1 (before 0.2): benchmark, params, fold, replica only.
ID_SCHEME = 2


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
    # How it computes beyond its params (see JobSettings.record): the job reads these from
    # its own record, never from the run's latest run.json.
    settings: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The job as JSON data, for writing out: its dicts are the job's own, not copies
        (asdict's deep copy was most of the time initialise took; issue 18)."""
        return {"id": self.id, "point": self.point, "point_params": self.point_params,
                "params": self.params, "fold": self.fold, "folds": self.folds,
                "replica": self.replica, "seed": self.seed, "settings": self.settings}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        return cls(**record)


@dataclass(frozen=True)
class JobSettings:
    """The sweep-wide settings that change what every job computes, besides its params."""

    cv_seed: int | None = None  # with cv: the fold assignment's inputs
    stratify: bool | None = None
    uq: dict[str, Any] | None = None  # the UQ method and options (UQSpec.identity)
    ranks: int = 1
    benchmark_version: int = 0  # a built-in benchmark's computation version

    @classmethod
    def of(cls, sweep: Sweep) -> JobSettings:
        definition = find_benchmark(sweep.benchmark, sweep.base_dir)
        version = definition.version if definition is not None else 0
        return cls(cv_seed=sweep.cv.seed if sweep.cv else None,
                   stratify=sweep.cv.stratify if sweep.cv else None,
                   uq=sweep.uq.identity() if sweep.uq else None,
                   ranks=sweep.resources.ranks_per_job, benchmark_version=version)

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> JobSettings:
        return cls(**(record or {}))


def job_id(benchmark: str, params: dict[str, Any], fold: int | None, replica: int,
           trial: int | None = None, *, folds: int | None = None, seed: int | None = None,
           settings: dict[str, Any] | None = None) -> str:
    """Hash of everything that makes the job what it is: same sweep, same ids. An adaptive
    search's jobs also carry their trial, since two trials may pick the same params."""
    return _hashed(_canonical(benchmark), _canonical(params), _canonical(settings or {}),
                   fold, replica, trial, folds, seed)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _scalar(value: Any) -> str:
    return str(value) if type(value) is int else _canonical(value)


def _hashed(benchmark: str, params: str, settings: str, fold: int | None, replica: int,
            trial: int | None, folds: int | None, seed: int | None) -> str:
    """``job_id`` from its parts already in canonical JSON: the canonical JSON of the whole
    identity (sort_keys, so the keys in this order) without re-encoding a point's params
    for each of its folds x replicas jobs (issue 18: a 10^6-job plan)."""
    canonical = (f'{{"benchmark":{benchmark},"fold":{_scalar(fold)},"folds":{_scalar(folds)},'
                 f'"params":{params},"replica":{_scalar(replica)},"scheme":{ID_SCHEME},'
                 f'"seed":{_scalar(seed)},"settings":{settings}'
                 + ("}" if trial is None else f',"trial":{_scalar(trial)}}}'))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def count_points(sweep: Sweep) -> int:
    """Search points; for an adaptive search, its trial budget."""
    spec = sweep.search
    if spec.adaptive:
        return spec.budget
    levels = max(1, len(sweep.uq.noise_levels)) if sweep.uq else 1
    if spec.method == "grid":
        return grid_size(spec) * levels
    if spec.method == "list":
        return len(spec.points) * levels
    return sum(1 for _ in iter_points(spec)) * levels


def sweep_points(sweep: Sweep) -> Iterator[dict[str, Any]]:
    """The search's points; a UQ noise sweep crosses each with every noise level (the
    levels innermost, so one point's levels sit side by side in summaries)."""
    levels = sweep.uq.noise_levels if sweep.uq else ()
    for point in iter_points(sweep.search):
        if not levels:
            yield point
        for level in levels:
            yield {**point, NOISE_PARAM: level}


def _base_seed(sweep: Sweep) -> int:
    """The sweep's rng_seed, else the benchmark's default, else the search seed."""
    if "rng_seed" in sweep.params:
        return int(sweep.params["rng_seed"])
    definition = find_benchmark(sweep.benchmark, sweep.base_dir)
    if definition is not None:
        return int(definition.defaults().get("rng_seed", sweep.search.seed))
    return sweep.search.seed


def iter_jobs(sweep: Sweep) -> Iterator[Job]:
    """Jobs in a stable order: point-major, then fold, then replica. An adaptive search
    has none up front: its jobs are made trial by trial (`JobTemplate.jobs`)."""
    if sweep.search.adaptive:
        return
    template = JobTemplate.of(sweep)
    for index, point in enumerate(sweep_points(sweep)):
        yield from template.jobs(index, point)


@dataclass(frozen=True)
class JobTemplate:
    """What turns a search point into its folds x replicas jobs. Kept in run.json, so the
    supervisor inside an allocation makes an adaptive search's jobs exactly as the login
    node would, without the sweep file."""

    benchmark: str
    params: dict[str, Any]
    folds: int | None
    replicas: int
    base_seed: int
    settings: dict[str, Any] = field(default_factory=dict)  # JobSettings.record()

    @classmethod
    def of(cls, sweep: Sweep) -> JobTemplate:
        return cls(sweep.benchmark, dict(sweep.params), sweep.cv.folds if sweep.cv else None,
                   sweep.uq.replicas if sweep.uq else 1, _base_seed(sweep),
                   JobSettings.of(sweep).record())

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> JobTemplate:
        return cls(**record)

    def jobs(self, index: int, point: dict[str, Any], *, trial: bool = False) -> list[Job]:
        """One point's jobs; ``trial``: an adaptive search's trial ``index`` (in the ids)."""
        folds: list[int | None] = list(range(self.folds)) if self.folds else [None]
        params = {**self.params, **point}
        jobs = []
        parts = (_canonical(self.benchmark), _canonical(params), _canonical(self.settings))
        for fold in folds:
            for replica in range(self.replicas):
                seed = self.base_seed + REPLICA_SEED_STRIDE * replica
                jobs.append(Job(
                    id=_hashed(*parts, fold, replica, index if trial else None, self.folds,
                               seed),
                    point=index, point_params=point, params=params, fold=fold,
                    folds=self.folds, replica=replica, seed=seed, settings=self.settings))
        return jobs
