"""The typed sweep: what a validated sweep.yaml becomes. No YAML, no schedulers, no TF."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from candle.spec.site import SiteConfig


@dataclass(frozen=True)
class Choice:
    """A finite list of values (grid axis, or a categorical for random search)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Uniform:
    """A float in [low, high], sampled uniformly or log-uniformly."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    """An integer in [low, high] (inclusive), optionally log-scaled or stepped."""

    low: int
    high: int
    log: bool = False
    step: int = 1


Dimension = Choice | Uniform | IntRange


@dataclass(frozen=True)
class PbtSpec:
    """Population-based training: ``population`` members of ``epochs`` epochs each, a
    ready point every ``ready`` epochs; the bottom ``truncate`` quantile exploits the top
    one; explore: resample with probability ``resample``, else scale by one of
    ``perturb``. ``mutable``: the space's params that may change mid-training."""

    population: int
    epochs: int
    ready: int
    truncate: float = 0.2
    perturb: tuple[float, ...] = (0.8, 1.2)
    resample: float = 0.25
    mutable: tuple[str, ...] = ()
    # A fixed schedule instead of exploit/explore: (start epoch, params) steps (a replay).
    schedule: tuple[tuple[int, dict[str, Any]], ...] = ()


@dataclass(frozen=True)
class SearchSpec:
    """How points are chosen. ``metric``/``direction`` are the first (or only) objective;
    ``metrics``/``directions`` list all of them (optuna may have several: a Pareto front)."""

    method: str  # grid | random | list | optuna | pbt
    space: dict[str, Dimension]
    points: tuple[dict[str, Any], ...]
    trials: int
    seed: int
    metric: str
    direction: str  # minimize | maximize
    metrics: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    sampler: str = "tpe"  # optuna only, as are the fields below
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    batch: int = 0  # array mode: trials asked (and submitted) together; 0 = not set
    # A previous run directory (or, optuna only, a CSV of params + metrics) to start from:
    # optuna adds its results as finished trials, the others reuse its identical jobs'
    # results. Not part of any job id: it changes what runs, not what a job computes.
    seed_from: Path | None = None
    pbt: PbtSpec | None = None  # method pbt only

    @property
    def adaptive(self) -> bool:
        """Jobs made as results come (optuna's trials, pbt's segments), not planned up front."""
        return self.method in ("optuna", "pbt")

    @property
    def budget(self) -> int:
        """Optuna's trials, or pbt's members."""
        return self.pbt.population if self.pbt is not None else self.trials

    @property
    def objectives(self) -> tuple[tuple[str, str], ...]:
        """(metric, direction) pairs, at least one."""
        if self.metrics:
            return tuple(zip(self.metrics, self.directions, strict=True))
        return ((self.metric, self.direction),)


@dataclass(frozen=True)
class CVSpec:
    """k-fold CV (``folds``; None: cross-study without folds), grouped by ``groups`` (no
    group in two folds; None: the benchmark's own grouping), with a ``holdout`` fraction
    of the groups kept out of every fold as a test set, ``repeats`` draws of the folds
    (repeat r draws with seed ``seed + REPEAT_SEED_STRIDE * r``), and, cross-study,
    training on ``train_studies`` and testing on each of ``test_studies``."""

    folds: int | None
    seed: int
    stratify: bool
    groups: str | None = None
    holdout: float = 0.0
    repeats: int = 1
    train_studies: tuple[str, ...] = ()
    test_studies: tuple[str, ...] = ()

    @property
    def designed(self) -> bool:
        """Anything beyond plain k-fold: the job is told its design (TrainContext.design)."""
        return bool(self.groups or self.holdout or self.train_studies)


REPEAT_SEED_STRIDE = 1_000_003  # repeated CV: repeat r's folds are drawn with seed + r x this


def repeat_seed(seed: int, repeat: int) -> int:
    """The fold seed of repeated CV's repeat ``repeat`` (repeat 0: the cv seed itself)."""
    return seed + REPEAT_SEED_STRIDE * repeat


EPOCH_SCHEDULES = ("flat", "linear", "log", "sqrt")


@dataclass(frozen=True)
class StagesSpec:
    """A leave-out tree, as CANDLE's cp-leaveout: ``children`` parts per node, ``depth``
    stages; a node trains on its parent's rows minus one part of them (made of ``split``
    groups) and validates on that part, starting from its parent's best weights.
    ``epochs`` says how a stage's epochs shrink with depth; ``baseline`` also trains every
    node below the first stage from scratch, for comparison."""

    depth: int
    children: int
    split: str
    epochs: str = "flat"
    baseline: bool = False

    def stage_epochs(self, epochs: int, stage: int) -> int:
        """Stage ``stage`` (1..depth) of ``epochs`` E: flat E; linear E (S - s + 1) / S;
        log E / (1 + ln s); sqrt E / sqrt(s); rounded up, at least 1."""
        import math

        share = {"flat": 1.0, "linear": (self.depth - stage + 1) / self.depth,
                 "log": 1.0 / (1.0 + math.log(stage)), "sqrt": 1.0 / math.sqrt(stage)}
        return max(1, math.ceil(epochs * share[self.epochs] - 1e-9))

    def nodes(self) -> int:
        """Tree nodes, baselines not counted: C + C^2 + ... + C^S."""
        return sum(self.children ** s for s in range(1, self.depth + 1))

    def jobs_per_replica(self) -> int:
        """Nodes, and their from-scratch twins below the first stage with ``baseline``."""
        return self.nodes() + (self.nodes() - self.children if self.baseline else 0)


UQ_METHODS = ("ensemble", "bootstrap", "mc_dropout", "noise")
UQ_LOSSES = ("heteroscedastic", "quantile")
NOISE_KINDS = ("features", "labels")
NOISE_PARAM = "uq_noise"  # a noise sweep's level, crossed into every point's params


@dataclass(frozen=True)
class UQSpec:
    """``replicas`` trainings per point and fold; ``method`` says how they differ: seeds
    (ensemble), bootstrap resamples of the training set, ``samples`` dropout-on forward
    passes at inference (mc_dropout), or ``noise_levels`` of Gaussian feature noise or
    label noise (noise: every level is its own point)."""

    replicas: int
    method: str = "ensemble"
    samples: int = 0
    noise_levels: tuple[float, ...] = ()
    noise: str = "features"
    loss: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"replicas": self.replicas, "method": self.method, "samples": self.samples,
                "noise_levels": list(self.noise_levels), "noise": self.noise,
                "loss": self.loss}

    def identity(self) -> dict[str, Any]:
        """What changes a job's computation: not ``replicas`` (replica k is the same job
        in an ensemble of 3 or of 5) nor ``noise_levels`` (a level is in each point's
        params)."""
        return {"method": self.method, "samples": self.samples, "noise": self.noise,
                "loss": self.loss}


@dataclass(frozen=True)
class Resources:
    """What one allocation offers and what each job takes from it.

    ``slots_per_node`` 0 means "this machine's cores" (local runs); ``max_concurrent`` 0
    means "as many jobs as the slots hold". Each rank takes one slot, and one GPU when
    ``gpus_per_node`` > 0.
    """

    scheduler: str
    ranks_per_job: int
    max_concurrent: int
    walltime: str
    nodes: int
    slots_per_node: int = 0
    gpus_per_node: int = 0
    oversubscribe: bool = False
    mode: str = "pack"  # cluster schedulers: pack (one allocation) | array (a task per job)
    array_throttle: int = 0  # array mode: at most this many tasks at once (%K); 0 = no limit
    site: SiteConfig | None = None  # cluster schedulers: the site config, loaded once
    signal_lead: int = 0  # seconds before the walltime when jobs checkpoint and stop; 0: off
    walltime_given: bool = False  # a local run keeps to its walltime only when one is set
    # warm: one-rank jobs are forked by a worker per node that imported TensorFlow once
    # (candle.job.worker); process: every job starts its own interpreter
    workers: str = "warm"


def direction_sign(direction: str) -> float:
    """+1 for minimize, -1 for maximize: sorting by sign x value puts the best first."""
    return 1.0 if direction == "minimize" else -1.0


def walltime_seconds(walltime: str) -> int:
    """'[D-]HH:MM:SS' (already checked) → seconds."""
    days, _, clock = walltime.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class Sweep:
    """A validated sweep. ``source`` is the file it came from; ``base_dir`` its folder."""

    name: str
    benchmark: str
    params: dict[str, Any]
    search: SearchSpec
    cv: CVSpec | None
    uq: UQSpec | None
    resources: Resources
    retries: int
    store: Path
    source: Path
    base_dir: Path
    text: str = field(repr=False, default="")
    job_timeout: float = 0.0  # training.job_timeout: seconds a job may run (0: no limit)
    stages: StagesSpec | None = None  # a leave-out tree (instead of cv folds)

    @property
    def run_dir(self) -> Path:
        return self.store / self.name
