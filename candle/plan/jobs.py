"""Jobs = search points × CV folds × UQ replicas, each with a stable id.

A job's id is a hash of everything that changes what it computes: the benchmark (and, for
a built-in, its computation version), the resolved parameters, the fold and how the folds
are drawn (count, seed, stratification), the replica and the seed it trains with, the UQ
method and its options, and the number of ranks (Horovod shards the data and scales the
learning rate by it). Change any of them and the job is a new job: a result is never
reused under settings it was not computed with."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from candle.benchmark import find_benchmark
from candle.plan.points import grid_size, iter_points
from candle.spec.model import NOISE_PARAM, StagesSpec, Sweep, repeat_seed

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
    repeat: int = 0  # repeated CV: which repetition (its folds are drawn with another seed)
    # A leave-out tree's node ("2.1": part 2 left out, then part 1 of the rest; its stage
    # is the number of parts) and the job it starts from (None: from scratch).
    node: str | None = None
    parent: str | None = None

    @property
    def stage(self) -> int:
        """A leave-out tree node's depth (1 for the first stage); 0 outside a tree."""
        return self.node.count(".") + 1 if self.node else 0

    @property
    def baseline(self) -> bool:
        """A tree node below the first stage trained from scratch (stages.baseline)."""
        return self.stage > 1 and self.parent is None

    def to_record(self) -> dict[str, Any]:
        """The job as JSON data, for writing out: its dicts are the job's own, not copies
        (asdict's deep copy was most of the time initialise took; issue 18). The fields of
        repeated CV and leave-out trees only where set."""
        record = {"id": self.id, "point": self.point, "point_params": self.point_params,
                  "params": self.params, "fold": self.fold, "folds": self.folds,
                  "replica": self.replica, "seed": self.seed, "settings": self.settings}
        if self.repeat:
            record["repeat"] = self.repeat
        if self.node is not None:
            record["node"] = self.node
            record["parent"] = self.parent
        return record

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
    # Issue 21's sample designs (candle.benchmark.DESIGN_KEYS), only where a sweep sets
    # them: a sweep without them hashes the settings it always did.
    groups: str | None = None
    holdout: float | None = None
    train_studies: list[str] | None = None
    test_studies: list[str] | None = None
    tree: dict[str, Any] | None = None  # a leave-out tree's parts: children, split

    @classmethod
    def of(cls, sweep: Sweep) -> JobSettings:
        definition = find_benchmark(sweep.benchmark, sweep.base_dir)
        version = definition.version if definition is not None else 0
        cv, stages = sweep.cv, sweep.stages
        return cls(cv_seed=cv.seed if cv else None,
                   stratify=cv.stratify if cv else None,
                   uq=sweep.uq.identity() if sweep.uq else None,
                   ranks=sweep.resources.ranks_per_job, benchmark_version=version,
                   groups=cv.groups if cv else None,
                   holdout=cv.holdout if cv and cv.holdout else None,
                   train_studies=list(cv.train_studies) if cv and cv.train_studies else None,
                   test_studies=list(cv.test_studies) if cv and cv.test_studies else None,
                   tree={"children": stages.children, "split": stages.split}
                   if stages else None)

    def record(self) -> dict[str, Any]:
        record = asdict(self)
        for key in _DESIGN_SETTINGS:
            if record[key] is None:
                del record[key]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> JobSettings:
        return cls(**(record or {}))


_DESIGN_SETTINGS = ("groups", "holdout", "train_studies", "test_studies", "tree")


def job_design(settings: dict[str, Any], job: Job) -> dict[str, Any] | None:
    """What the job's training is told of its sample design (TrainContext.design), or None
    where the sweep set none (the benchmark splits as it always did)."""
    if job.node is None and not any(settings.get(key) for key in _DESIGN_SETTINGS):
        return None
    tree = settings.get("tree") or {}
    return {"groups": settings.get("groups"), "holdout": float(settings.get("holdout") or 0.0),
            "seed": int(settings.get("cv_seed") or 0),
            "train_studies": list(settings.get("train_studies") or []),
            "test_studies": list(settings.get("test_studies") or []),
            "node": [int(part) for part in job.node.split(".")] if job.node else None,
            "children": int(tree.get("children") or 0), "split": tree.get("split")}


def fold_seed(settings: dict[str, Any], job: Job) -> int:
    """The seed the job's folds are drawn with: repeated CV draws each repeat anew."""
    return repeat_seed(int(settings.get("cv_seed") or 0), job.repeat)


def job_id(benchmark: str, params: dict[str, Any], fold: int | None, replica: int,
           trial: int | None = None, *, folds: int | None = None, seed: int | None = None,
           settings: dict[str, Any] | None = None, repeat: int = 0, node: str | None = None,
           parent: str | None = None) -> str:
    """Hash of everything that makes the job what it is: same sweep, same ids. An adaptive
    search's jobs also carry their trial, since two trials may pick the same params."""
    return _hashed(_canonical(benchmark), _canonical(params), _canonical(settings or {}),
                   fold, replica, trial, folds, seed, repeat, node, parent)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _scalar(value: Any) -> str:
    return str(value) if type(value) is int else _canonical(value)


def _hashed(benchmark: str, params: str, settings: str, fold: int | None, replica: int,
            trial: int | None, folds: int | None, seed: int | None, repeat: int = 0,
            node: str | None = None, parent: str | None = None) -> str:
    """``job_id`` from its parts already in canonical JSON: the canonical JSON of the whole
    identity (sort_keys, so the keys in this order) without re-encoding a point's params
    for each of its folds x replicas jobs (issue 18: a 10^6-job plan). A repeat, a tree
    node and its parent are keys only where set, so the ids of plain jobs stay as they
    were (repeat 0 computes what unrepeated CV does)."""
    tree = "" if node is None else f'"node":{_canonical(node)},'
    tree_parent = "" if node is None else f'"parent":{_canonical(parent)},'
    repeated = f'"repeat":{_scalar(repeat)},' if repeat else ""
    canonical = (f'{{"benchmark":{benchmark},"fold":{_scalar(fold)},"folds":{_scalar(folds)},'
                 f'{tree}"params":{params},{tree_parent}{repeated}'
                 f'"replica":{_scalar(replica)},"scheme":{ID_SCHEME},'
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
    repeats: int = 1  # repeated CV
    # A leave-out tree: StagesSpec's fields, and the epochs a point has unless it sets them
    # (the benchmark's default; None for a training function without declared params).
    stages: dict[str, Any] | None = None
    default_epochs: int | None = None

    @classmethod
    def of(cls, sweep: Sweep) -> JobTemplate:
        stages = asdict(sweep.stages) if sweep.stages else None
        epochs = None
        if sweep.stages is not None:
            definition = find_benchmark(sweep.benchmark, sweep.base_dir)
            default = definition.defaults().get("epochs") if definition else None
            epochs = int(default) if default is not None else None
        return cls(sweep.benchmark, dict(sweep.params), sweep.cv.folds if sweep.cv else None,
                   sweep.uq.replicas if sweep.uq else 1, _base_seed(sweep),
                   JobSettings.of(sweep).record(), sweep.cv.repeats if sweep.cv else 1,
                   stages, epochs)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> JobTemplate:
        return cls(**record)

    def jobs(self, index: int, point: dict[str, Any], *, trial: bool = False) -> list[Job]:
        """One point's jobs; ``trial``: an adaptive search's trial ``index`` (in the ids)."""
        if self.stages is not None:
            return self._tree_jobs(index, point)
        folds: list[int | None] = list(range(self.folds)) if self.folds else [None]
        params = {**self.params, **point}
        jobs = []
        parts = (_canonical(self.benchmark), _canonical(params), _canonical(self.settings))
        for repeat in range(self.repeats):
            for fold in folds:
                for replica in range(self.replicas):
                    seed = self.base_seed + REPLICA_SEED_STRIDE * replica
                    jobs.append(Job(
                        id=_hashed(*parts, fold, replica, index if trial else None,
                                   self.folds, seed, repeat),
                        point=index, point_params=point, params=params, fold=fold,
                        folds=self.folds, replica=replica, seed=seed,
                        settings=self.settings, repeat=repeat))
        return jobs

    def _tree_jobs(self, index: int, point: dict[str, Any]) -> list[Job]:
        """A point's leave-out tree, stage by stage (a parent always before its children):
        every node per replica, its parent the same replica's node one level up; with
        ``baseline``, each node below the first stage again from scratch."""
        assert self.stages is not None
        stages = StagesSpec(**self.stages)
        base = {**self.params, **point}
        epochs = base.get("epochs", self.default_epochs)
        # The point's own params (before the schedule) are in every node's id: two points
        # whose epochs round to the same stage epochs must not plan one baseline twice.
        settings = _canonical({**self.settings, "tree_point": base})
        benchmark = _canonical(self.benchmark)
        ids: dict[tuple[str, int], str] = {}
        jobs = []
        for stage in range(1, stages.depth + 1):
            params = base if epochs is None else {
                **base, "epochs": stages.stage_epochs(int(epochs), stage)}
            encoded = _canonical(params)
            paths = itertools.product(range(1, stages.children + 1), repeat=stage)
            for node in (".".join(map(str, path)) for path in paths):
                up = node.rpartition(".")[0]
                for replica in range(self.replicas):
                    seed = self.base_seed + REPLICA_SEED_STRIDE * replica
                    parent = ids[(up, replica)] if up else None
                    twins = [parent, None] if parent is not None and stages.baseline else [
                        parent]
                    for start in twins:
                        job = Job(id=_hashed(benchmark, encoded, settings, None, replica,
                                             None, None, seed, 0, node, start),
                                  point=index, point_params=point, params=params, fold=None,
                                  folds=None, replica=replica, seed=seed,
                                  settings=self.settings, node=node, parent=start)
                        jobs.append(job)
                    ids[(node, replica)] = jobs[-len(twins)].id
        return jobs
