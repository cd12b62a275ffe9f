"""Epoch reports from a running job, and the supervisor's prune verdict back.

Rank 0 writes ``report.json`` (step and metrics) into the job directory; when the search
prunes, it then waits for ``verdict.json`` for that step. The verdict is broadcast to every
rank (mpi4py), so all ranks of a Horovod job stop at the same epoch end and none is left
waiting in an allreduce. A pruned job ends with status ``pruned``, not ``failed``.

User models call ``candle.report(step, metrics)`` once per epoch; it raises
``candle.Pruned`` when the search wants the trial stopped (outside an adaptive search it
only keeps the epoch for the job's history).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from candle.job import interrupt
from candle.store.atomic import atomic_write_json, read_json

VERDICT_POLL_SECONDS = 0.02
DEFAULT_VERDICT_TIMEOUT = 600.0  # the supervisor answers within a loop turn (0.2 s)


class Pruned(Exception):
    """The search stopped this trial at ``step``; ``metrics`` are that epoch's."""

    def __init__(self, step: int, metrics: dict[str, float]) -> None:
        super().__init__(f"pruned at step {step}")
        self.step = step
        self.metrics = metrics


class EpochReporter:
    def __init__(self, job_dir: Path, *, rank: int, size: int, wait_for_verdict: bool,
                 timeout_s: float | None = None, publish: bool = True) -> None:
        self.job_dir = Path(job_dir)
        self.publish = publish  # False: keep the history only (no report.json, no verdict)
        self.rank = rank
        self.size = size
        self.wait = wait_for_verdict
        self.timeout_s = timeout_s if timeout_s is not None else float(
            os.environ.get("CANDLE_VERDICT_TIMEOUT", DEFAULT_VERDICT_TIMEOUT))
        self.history: dict[str, list[float]] = {}

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        values = {str(k): float(v) for k, v in metrics.items()}
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)
        if not self.publish:
            return
        prune = False
        if self.rank == 0:
            atomic_write_json(self.job_dir / "report.json",
                              {"step": int(step), "metrics": values, "time": time.time()})
            if self.wait:
                prune = self._verdict(int(step))
        if self.size > 1:
            prune = interrupt.from_rank0(prune)
        if prune:
            raise Pruned(int(step), values)

    def _verdict(self, step: int) -> bool:
        deadline = time.monotonic() + self.timeout_s
        path = self.job_dir / "verdict.json"
        while time.monotonic() < deadline:
            try:
                verdict = read_json(path)
            except (OSError, ValueError):
                verdict = None
            if verdict is not None and int(verdict.get("step", 0)) >= step:
                return bool(verdict.get("prune"))
            time.sleep(VERDICT_POLL_SECONDS)
        print(f"candle: no prune verdict for step {step} within {self.timeout_s:.0f} s; "
              "going on", file=sys.stderr)
        return False


_CURRENT: EpochReporter | None = None
_SIZE = 1


def use_reporter(reporter: EpochReporter | None, size: int = 1) -> None:
    global _CURRENT, _SIZE
    _CURRENT = reporter
    _SIZE = size


def report(step: int, metrics: dict[str, Any]) -> None:
    """Report epoch ``step``'s metrics (call it after saving the epoch's state). Raises
    Pruned if the search stops this trial, Interrupted if the job must stop now (walltime,
    preemption): the next attempt should resume from the state saved in ``job_dir``."""
    if _CURRENT is not None:
        _CURRENT(step, metrics)
    interrupt.check(int(step), _SIZE)


def stop_requested() -> bool:
    """Whether this job was asked to stop (a model with its own loop may look at this)."""
    return interrupt.requested()
