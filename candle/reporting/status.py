"""`candle status`: how many jobs are in which state, and why the failed (or timed-out)
ones failed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from candle.plan.jobs import Job
from candle.state import JobState
from candle.store.run_store import RunStore

LOST_ROWS = 10


@dataclass
class Failure:
    job_id: str
    error: str
    attempt: int
    log_tail: list[str]
    state: str = JobState.FAILED.value  # failed, or timeout (killed after job_timeout)


@dataclass
class RunStatus:
    name: str
    total: int
    counts: Counter[JobState] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    batch: list[dict[str, Any]] = field(default_factory=list)  # the scheduler's view
    notes: dict[str, str] = field(default_factory=dict)  # job id -> what the scheduler saw
    running: list[Job] = field(default_factory=list)  # `status --watch` shows them
    lost: list[str] = field(default_factory=list)  # marked running; their supervisor is gone

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "total": self.total,
            "counts": {s.value: self.counts.get(s, 0) for s in JobState},
            "failures": [f.__dict__ for f in self.failures],
            "lost": self.lost,
            "batch": self.batch, "notes": self.notes,
        }


def collect_status(store: RunStore, tail_lines: int = 8) -> RunStatus:
    store.require()
    status = RunStatus(name=store.manifest().name, total=0)
    states = store.states()  # opens only the results new since the cache's last refresh
    status.total = len(states)
    status.counts.update(states.values())
    failed = [job_id for job_id, state in states.items() if state.failed]
    running = {job_id for job_id, state in states.items() if state is JobState.RUNNING}
    status.lost = [job_id for job_id, state in states.items() if state is JobState.LOST]
    if running:
        status.running = [job for job in store.jobs() if job.id in running]
    results = store.cached_results(failed)  # only the shards that hold failures
    for job_id in failed:
        result = results.get(job_id) or {}
        status.failures.append(Failure(
            job_id=job_id,
            error=str(result.get("error", "unknown error")),
            attempt=int(result.get("attempt", 0)),
            log_tail=store.log_tail(job_id, tail_lines) if tail_lines > 0 else [],
            state=states[job_id].value,
        ))
    return status


def lost_lines(status: RunStatus) -> list[str]:
    """One line per lost job (the first LOST_ROWS), and what to do about them."""
    if not status.lost:
        return []
    lines = [f"lost {job_id}: marked running, but its supervisor is gone (its lease "
             "expired, or its process ended)" for job_id in status.lost[:LOST_ROWS]]
    if len(status.lost) > LOST_ROWS:
        lines.append(f"... and {len(status.lost) - LOST_ROWS} more lost")
    lines.append("lost jobs run again (from their last checkpoint) with the next `candle run`")
    return lines
