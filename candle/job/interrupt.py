"""A job asked to stop early: the walltime is near, the node is preempted, or the user
stopped the run. The signal (SIGUSR1 from the supervisor or from Slurm's
``--signal``, SIGTERM from a preemption or ``scancel``) only sets a flag; the training loop
looks at it at the next epoch end, *after* that epoch's checkpoint is written, and the job
then ends with status ``interrupted``. The next attempt resumes from that checkpoint, so
no finished epoch is ever trained twice.

User models call ``candle.report(step, metrics)`` once per epoch (after saving their own
state in ``params["job_dir"]``); it raises :class:`Interrupted` when a stop was asked for.
``candle.stop_requested()`` answers the same question without raising.
"""

from __future__ import annotations

import signal
from typing import Any

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

_requested: int | None = None  # the signal that asked, once one did


class Interrupted(Exception):
    """Raised on every rank at the end of epoch ``step`` when the job was asked to stop."""

    def __init__(self, step: int) -> None:
        super().__init__(f"interrupted after step {step}")
        self.step = step


def _on_signal(signum: int, frame: Any) -> None:
    global _requested
    _requested = signum


def install() -> None:
    """Catch the stop signals (call once, in the main thread, before training starts)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)


def requested() -> bool:
    """Whether this process was asked to stop."""
    return _requested is not None


def from_rank0(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank of this job (mpi4py), so all ranks decide alike."""
    from mpi4py import MPI

    return bool(MPI.COMM_WORLD.bcast(flag, root=0))


def agreed(size: int, bcast: Any = None) -> bool:
    """Whether the job stops now: rank 0's flag, broadcast so that every rank of a
    Horovod job leaves at the same epoch end (none is left waiting in an allreduce)."""
    flag = requested()
    if size <= 1:
        return flag
    return bool((bcast or from_rank0)(flag))


def check(step: int, size: int, bcast: Any = None) -> None:
    """At an epoch end, after the checkpoint: raise Interrupted if the job should stop."""
    if agreed(size, bcast):
        raise Interrupted(step)
