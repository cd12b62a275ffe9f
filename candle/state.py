"""The one JobState vocabulary every layer speaks."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    PRUNED = "pruned"  # stopped early by the search's pruner: finished, not failed
    INTERRUPTED = "interrupted"  # stopped at a checkpoint (walltime, preemption): resumes
    LOST = "lost"  # marked running, but its supervisor is gone (lease expired): runs again

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.PRUNED)
