"""What every scheduler backend speaks: allocation states and the submission record."""

from __future__ import annotations

from enum import StrEnum


class AllocState(StrEnum):
    """A batch job's state. TIMEOUT, PREEMPTED, NODE_FAIL, OUT_OF_MEMORY are not FAILED:
    the job's code may have been fine, and its work can resume from a checkpoint."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    PREEMPTED = "PREEMPTED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self not in (AllocState.PENDING, AllocState.RUNNING, AllocState.UNKNOWN)
