"""`candle run`: write the run directory from the sweep, then supervise its jobs."""

from __future__ import annotations

import os
import time
from typing import Any

from candle import __version__
from candle.launch.local import LocalLauncher
from candle.plan.jobs import iter_jobs
from candle.spec.model import Sweep
from candle.store.run_store import RunStore
from candle.supervisor.loop import Event, Outcome, Supervisor


def run_meta(sweep: Sweep) -> dict[str, Any]:
    return {
        "name": sweep.name,
        "benchmark": sweep.benchmark,
        "metric": sweep.search.metric,
        "direction": sweep.search.direction,
        "method": sweep.search.method,
        "folds": sweep.cv.folds if sweep.cv else None,
        "cv_seed": sweep.cv.seed if sweep.cv else 0,
        "stratify": sweep.cv.stratify if sweep.cv else True,
        "replicas": sweep.uq.replicas if sweep.uq else 1,
        "base_dir": str(sweep.base_dir),
        "source": str(sweep.source),
        "candle_version": __version__,
        "updated": time.time(),
    }


def threads_per_job(max_concurrent: int, ranks: int) -> int:
    """Share this node's cores between concurrent jobs' ranks (TF would take them all)."""
    return max(1, (os.cpu_count() or 1) // max(1, max_concurrent * ranks))


def run_sweep(sweep: Sweep, on_event: Event | None = None,
              on_planned: Any = None) -> Outcome:
    """Plan, (re)write the run directory and run every job not already done."""
    store = RunStore(sweep.run_dir)
    with store.supervisor_lock():
        total = store.initialise(sweep.text, run_meta(sweep), iter_jobs(sweep))
        if on_planned is not None:
            on_planned(total)
        resources = sweep.resources
        supervisor = Supervisor(
            store, LocalLauncher(),
            max_concurrent=resources.max_concurrent,
            ranks_per_job=resources.ranks_per_job,
            retries=sweep.retries,
            threads_per_job=threads_per_job(resources.max_concurrent, resources.ranks_per_job),
            on_event=on_event,
            env={"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"},
        )
        return supervisor.run(store.jobs())
