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
    TIMEOUT = "timeout"  # killed after training.job_timeout (and its retries): like failed

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.PRUNED, JobState.TIMEOUT)

    @property
    def failed(self) -> bool:
        """Ended without a result: failed, or timed out (a re-run runs both again)."""
        return self in (JobState.FAILED, JobState.TIMEOUT)
