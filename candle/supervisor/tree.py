"""The supervisor's order for a leave-out tree (issue 21): a node's job starts only once
its parent's is done, since it starts from the parent's best weights.

The plan lists parents before children; this source hands out the jobs whose parent is
done, in plan order, and holds the rest until theirs finishes. A parent that fails for
good (after its retries) blocks its whole subtree: those jobs are not run and stay pending,
so `candle run` again retries the parent and then runs them. A resumed tree starts with
every job whose parent is already done in the store."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

from candle.plan.jobs import Job
from candle.state import JobState


class TreeSource:
    """A JobSource over a plan with parent links."""

    def __init__(self, jobs: Iterable[Job], done: Callable[[str], bool],
                 on_blocked: Callable[[Job, list[Job]], None] | None = None) -> None:
        self._ready: deque[Job] = deque()
        self._waiting: dict[str, list[Job]] = defaultdict(list)
        self._on_blocked = on_blocked or (lambda parent, blocked: None)
        for job in jobs:
            if job.parent is None or done(job.parent):
                self._ready.append(job)
            else:
                self._waiting[job.parent].append(job)

    def next_job(self) -> Job | None:
        return self._ready.popleft() if self._ready else None

    def exhausted(self) -> bool:
        """Nothing ready, nothing waiting on a parent that may still finish."""
        return not self._ready and not self._waiting

    def wanted(self, job: Job) -> bool:
        return True

    def on_result(self, job: Job, state: JobState, result: dict[str, Any] | None) -> None:
        children = self._waiting.pop(job.id, [])
        if state is JobState.DONE:
            self._ready.extend(children)
            return
        stack, blocked = list(children), []
        while stack:  # the whole subtree waits for the next `candle run`
            child = stack.pop()
            blocked.append(child)
            stack.extend(self._waiting.pop(child.id, []))
        if blocked:
            self._on_blocked(job, blocked)

    def poll(self, running: list[Job]) -> None:
        pass


def blocked_notice(parent: Job, blocked: list[Job]) -> str:
    """What a failed parent leaves undone, in one line."""
    return (f"job {parent.id} (tree node {parent.node}) did not finish: its {len(blocked)} "
            f"descendant node(s) are not run; `candle run` again retries it, then runs them")
