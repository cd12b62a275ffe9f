"""Drive candle's OptunaSource in-process the way the supervisor does, with simulated
workers: ``concurrency`` jobs in flight, each finishing in random order (asynchronous, as
on a cluster), the objective computed here instead of in a launched process. For comparing
samplers on analytic functions (tests, scripts/perf/search_quality.py) in seconds."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from candle.adaptive.config import OptunaConfig
from candle.adaptive.source import OptunaSource
from candle.adaptive.study import open_study
from candle.plan.jobs import Job, JobTemplate
from candle.spec.model import Resources
from candle.state import JobState
from candle.store.manifest import RunManifest
from candle.store.run_store import RunStore

Objective = Callable[[dict[str, Any]], dict[str, float]]


def config(sampler: str, seed: int, trials: int, dims: int = 4,
           **options: Any) -> OptunaConfig:
    space = {f"x{i}": {"uniform": [-5.0, 5.0], "log": False} for i in range(dims)}
    return OptunaConfig("study", ("val_loss",), ("minimize",), trials, seed, sampler,
                        options, space=space)


def shifted_sphere(params: dict[str, Any]) -> dict[str, float]:
    """Minimum 0 at x_i = 1.5 - i (no sampler starts there by luck)."""
    xs = [float(v) for k, v in sorted(params.items()) if k.startswith("x")]
    return {"val_loss": sum((x - (1.5 - i)) ** 2 for i, x in enumerate(xs))}


def drive(root: Path, cfg: OptunaConfig, objective: Objective, *, concurrency: int = 2,
          seed: int = 0, folds: int | None = None, replicas: int = 1
          ) -> tuple[OptunaSource, RunStore]:
    """Run the whole budget; the objective sees each job's params plus fold and replica."""
    store = RunStore(root)
    store.initialise("", RunManifest(
        name="study", benchmark="user:model", metric=cfg.metrics[0], method="optuna",
        base_dir=root, source=root / "sweep.yaml", optuna=cfg,
        resources=Resources("local", 1, concurrency, "00:00:00", 1)), None)
    template = JobTemplate("user:model", {}, folds, replicas, 0)
    source = OptunaSource(store, open_study(root, cfg), cfg, template)
    rng = random.Random(seed)
    running: list[Job] = []
    while not source.exhausted():
        while len(running) < concurrency and (job := source.next_job()) is not None:
            running.append(job)
        job = running.pop(rng.randrange(len(running)))
        metrics = objective({**job.params, "fold": job.fold, "replica": job.replica})
        result = {"job_id": job.id, "status": "done", "metrics": metrics}
        store.write_result(job.id, result)
        source.on_result(job, JobState.DONE, result)
    return source, store


def best_value(source: OptunaSource) -> float:
    return float(source.study.best_value)

