"""The supervisor loop: keep the allocation's slots full, retry failures, resume from the
store. It knows slots and processes, not scheduler syntax. Each job is its own launch (its
own mpirun/srun/mpiexec), so a rank that segfaults or is OOM-killed, or a job that calls
MPI_Abort, takes down that job only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from candle.launch._base import Launcher, LaunchRequest, Placement, job_env
from candle.plan.jobs import Job
from candle.state import JobState
from candle.store.run_store import RunStore
from candle.supervisor.procs import die_with_parent
from candle.supervisor.slots import SlotPool

POLL_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 5.0


class Interrupted(Exception):
    """The user stopped the run (Ctrl-C / SIGTERM); running jobs were stopped cleanly."""


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    skipped: int = 0  # already done before this run
    failed_ids: list[str] = field(default_factory=list)


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    attempt: int
    tries: int
    placement: Placement


Event = Callable[[str, Job, dict[str, Any] | None], None]


class Supervisor:
    def __init__(
        self,
        store: RunStore,
        launcher: Launcher,
        *,
        pool: SlotPool,
        max_concurrent: int = 0,
        ranks_per_job: int = 1,
        retries: int = 1,
        threads_per_job: int = 0,
        on_event: Event | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.launcher = launcher
        self.ranks = ranks_per_job
        self.pool = pool
        self.max_concurrent = max_concurrent  # 0: as many as the slots hold
        if not self.pool.fits_ever(ranks_per_job):
            raise ValueError(f"a {ranks_per_job}-rank job can never fit this allocation")
        self.retries = retries
        self.threads = threads_per_job
        self.on_event = on_event or (lambda kind, job, result: None)
        self.env = {**os.environ, **(env or {})}
        if threads_per_job:
            self.env.setdefault("OMP_NUM_THREADS", str(threads_per_job))
        self._running: dict[str, _Running] = {}
        self._stop = False

    def run(self, jobs: Iterable[Job]) -> Outcome:
        outcome = Outcome()
        queue: deque[tuple[Job, int]] = deque()
        for job in jobs:
            state = self.store.state(job.id)
            if state is JobState.DONE:
                self.store.clear_running(job.id)  # left if a supervisor died at that moment
                outcome.skipped += 1
                self.on_event("skipped", job, self.store.result(job.id))
                continue
            queue.append((job, 1))
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_sigterm)}
        try:
            while queue or self._running:
                if self._stop:
                    raise KeyboardInterrupt
                while queue and self._room():
                    placement = self.pool.place(self.ranks)
                    if placement is None:
                        break
                    job, tries = queue.popleft()
                    self._launch(job, tries, placement)
                time.sleep(POLL_SECONDS)
                for job_id in [j for j, r in self._running.items() if r.process.poll() is not None]:
                    running = self._running.pop(job_id)
                    self.pool.release(running.placement)
                    self._finish(running, queue, outcome)
        except KeyboardInterrupt:
            self._terminate_all()
            raise Interrupted from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return outcome

    def _room(self) -> bool:
        return not self.max_concurrent or len(self._running) < self.max_concurrent

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _launch(self, job: Job, tries: int, placement: Placement) -> None:
        store = self.store
        store.clear_result(job.id)  # a failed result from before moves to attempts.jsonl
        attempt = store.previous_attempts(job.id) + 1
        store.job_dir(job.id).mkdir(parents=True, exist_ok=True)
        store.write_params(job)
        request = LaunchRequest(store.root, job.id, self.ranks, attempt, self.threads,
                                placement)
        argv = self.launcher.argv(request)
        log = store.log_path(job.id).open("ab")
        where = " ".join(f"{host}:{count}" for host, count in placement.hosts)
        log.write(f"=== attempt {attempt} on {where}: {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env={**self.env, **job_env(request)},
                                   start_new_session=True, preexec_fn=die_with_parent)
        store.mark_running(job.id, process.pid, attempt)
        self._running[job.id] = _Running(job, process, log, attempt, tries, placement)
        self.on_event("started", job, None)

    def _finish(self, running: _Running, queue: deque[tuple[Job, int]], outcome: Outcome) -> None:
        job, code = running.job, running.process.returncode
        running.log.close()
        result = self.store.result(job.id)
        # A complete result counts even if teardown (MPI finalise) then exited non-zero.
        if result is not None and result.get("status") == "done":
            self.store.clear_running(job.id)
            outcome.done += 1
            self.on_event("done", job, result)
            return
        if result is None or result.get("status") != "failed":
            result = self._crash_result(running, code, result)
            self.store.write_result(job.id, result)
        self.store.clear_running(job.id)
        if running.tries <= self.retries:
            self.on_event("retry", job, result)
            queue.append((job, running.tries + 1))
            return
        outcome.failed += 1
        outcome.failed_ids.append(job.id)
        self.on_event("failed", job, result)

    def _crash_result(self, running: _Running, code: int, old: dict[str, Any] | None
                      ) -> dict[str, Any]:
        """The job died without saying why (signal, OOM kill, exit without a result)."""
        if code < 0:
            reason = f"killed by signal {signal.Signals(-code).name}"
        elif code == 0:
            reason = "exited 0 without writing a result"
        else:
            reason = f"exited with code {code}"
            if code == 137:
                reason += " (SIGKILL: out of memory?)"
            elif 128 < code < 128 + signal.NSIG:  # mpirun/srun report a rank's death so
                with contextlib.suppress(ValueError):
                    reason += f" (a rank died of {signal.Signals(code - 128).name})"
        return {"job_id": running.job.id, "status": "failed", "error": reason,
                "exit_code": code, "attempt": running.attempt, "metrics": {},
                "ended": time.time(), "log_tail": self.store.log_tail(running.job.id, 20)}

    def _terminate_all(self) -> None:
        for running in self._running.values():
            _signal_group(running.process, signal.SIGTERM)
        deadline = time.time() + TERMINATE_GRACE_SECONDS
        for running in self._running.values():
            try:
                running.process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(running.process, signal.SIGKILL)
                running.process.wait()
            running.log.close()
            # Whatever it wrote before dying stays; with no result it is pending next time.
            self.store.clear_running(running.job.id)
            self.pool.release(running.placement)
        self._running.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
