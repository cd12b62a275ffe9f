"""The supervisor loop: keep the allocation's slots full, retry failures, resume from the
store. It knows slots and processes, not scheduler syntax. Each job is its own launch (its
own mpirun/srun/mpiexec), so a rank that segfaults or is OOM-killed, or a job that calls
MPI_Abort, takes down that job only.

Job timeout (``job_timeout``, the sweep's ``training.job_timeout``): an attempt that runs
longer is killed (SIGTERM to its launcher's process group, SIGKILL a grace later) and
ends ``timeout``; it is retried like a failure, and after its last try the job stays
``timeout``. A drain never times a job out: what the drain stops ends ``interrupted``.

Walltime: given the allocation's end (``deadline``) it starts no job that the time left
cannot finish (estimated from finished jobs of the same size), and ``signal_lead`` seconds
before the end — or when SIGUSR1 arrives (Slurm's ``--signal=B:USR1@lead``) — it drains:
running jobs get SIGUSR1, checkpoint at their next epoch end and exit ``interrupted``, and
nothing new starts. ``Outcome.left`` then tells the caller to continue elsewhere.

Stop: SIGTERM (qdel, scancel, a preemption) or SIGINT (Ctrl-C) drains the same way, with
``stop_grace`` seconds (shorter than the scheduler's own kill grace) for the jobs to reach
a checkpoint; what is still running then gets SIGTERM, then SIGKILL. A second signal kills
at once. The caller then gets :class:`RunStopped`.

While it runs, the supervisor renews its lease (candle.store.lease): the running markers
it writes name it, and are believed on other nodes only while the lease is fresh."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

from candle.launch._base import (
    OPENMPI_SIGKILL_TIMEOUT,
    Launcher,
    LaunchRequest,
    Placement,
    job_args,
    job_env,
)
from candle.plan.jobs import Job
from candle.state import JobState
from candle.store.lease import Lease
from candle.store.run_store import RunStore
from candle.store.tensorboard import record_job
from candle.supervisor.estimate import Durations
from candle.supervisor.procs import die_with_parent
from candle.supervisor.slots import SlotPool
from candle.supervisor.warm import WarmJob, WarmWorkers

POLL_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 3.0  # SIGTERM, then this long before SIGKILL
EXIT_RESUMABLE = 75  # EX_TEMPFAIL: stopped at a checkpoint; the same command continues
DRAIN_GRACE_SECONDS = 60.0  # with no known deadline: how long drained jobs get to stop
STOP_GRACE_SECONDS = 20.0  # a local run, stopped: its jobs' time to checkpoint (fits Slurm's 30 s)
WRITTEN_GRACE_SECONDS = 2.0  # a job whose result is written gets this long to exit...
SETTLED_CHECK_SECONDS = 1.0  # ...looked at this often (see _reap_settled)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunStopped(Exception):
    """The user stopped the run (Ctrl-C, SIGTERM: qdel, scancel, a preemption); running
    jobs were drained to a checkpoint. ``outcome``: what the run did (None if cut short)."""

    def __init__(self, outcome: Outcome | None = None) -> None:
        super().__init__("stopped by a signal")
        self.outcome = outcome


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    timed_out: int = 0  # killed after job_timeout on every try (not counted in failed)
    skipped: int = 0  # already done (or pruned) before this run
    pruned: int = 0
    interrupted: int = 0  # stopped by a drain; they resume next time
    checkpointed: int = 0  # of those, the ones that stopped themselves at a checkpoint
    left: bool = False  # work remains that this supervisor did not do (walltime, fail-fast)
    stopped_by: str = ""  # why it stopped early: walltime | signal | fail-fast | bad-metric
    fatal: str = ""  # a mistake in the sweep that every job would repeat (bad-metric)
    failed_ids: list[str] = field(default_factory=list)


@runtime_checkable
class JobSource(Protocol):
    """Where the supervisor's jobs come from: a fixed plan, or an adaptive search that
    makes the next job only when asked (when a slot is free)."""

    def next_job(self) -> Job | None:
        """A job to launch now, or None (nothing now; maybe later)."""

    def exhausted(self) -> bool:
        """True when no job will ever come again."""

    def wanted(self, job: Job) -> bool:
        """Whether a failed job is still worth its retry."""

    def on_result(self, job: Job, state: JobState, result: dict[str, Any] | None) -> None:
        """A job ended for good: done, failed after its retries, or pruned."""

    def poll(self, running: list[Job]) -> None:
        """Every loop turn: look at the running jobs' reports."""


class PlanSource:
    """A fixed list of jobs, in order."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs = deque(jobs)

    def next_job(self) -> Job | None:
        return self._jobs.popleft() if self._jobs else None

    def exhausted(self) -> bool:
        return not self._jobs

    def wanted(self, job: Job) -> bool:
        return True

    def on_result(self, job: Job, state: JobState, result: dict[str, Any] | None) -> None:
        pass

    def poll(self, running: list[Job]) -> None:
        pass


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen[bytes] | WarmJob
    log: IO[bytes]
    attempt: int
    tries: int
    placement: Placement
    started: float = field(default_factory=time.time)
    lingers: bool = False  # its launcher may sit out a kill timeout after the job ended
    timed_out: float = 0.0  # when job_timeout's SIGTERM was sent (0: not timed out)


Event = Callable[[str, Job, dict[str, Any] | None], None]
Notice = Callable[[str], None]


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
        deadline: float | None = None,
        began: float | None = None,
        signal_lead: float = 0.0,
        fail_fast: bool = False,
        on_notice: Notice | None = None,
        stop_grace: float = STOP_GRACE_SECONDS,
        job_timeout: float = 0.0,
        workers: str = "process",
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
        self.deadline = deadline  # the allocation's end (epoch seconds), when known
        self.signal_lead = signal_lead
        self.fail_fast = fail_fast
        self.on_notice = on_notice or (lambda message: None)
        self.stop_grace = stop_grace  # SIGTERM/SIGINT: the jobs' time to reach a checkpoint
        self.job_timeout = job_timeout  # seconds an attempt may run (0: no limit)
        self.durations = Durations(store.root)
        # Warm workers run one-rank jobs (a multi-rank job is its own MPI launch: MPI cannot
        # start again in a forked child of a process, see docs/performance.md).
        self.warm: WarmWorkers | None = None
        if workers == "warm" and ranks_per_job == 1:
            self.warm = WarmWorkers(store.root, self._worker_argv, self.env, self.on_notice)
        self.lease = Lease(store.root)
        self._running: dict[str, _Running] = {}
        self._stop_signals: list[int] = []  # SIGTERM/SIGINT as they arrived
        self._stops_heeded = 0
        self._stopped_by = ""  # the stop signal's name, once one came
        self._term_at = self._kill_at = float("inf")  # draining: when stragglers are killed
        self._termed = False
        self._settled_checked = 0.0
        self._drain_asked = False  # SIGUSR1 arrived
        self._draining = ""  # why: walltime | signal | fail-fast
        self._drain_started = 0.0
        self._out_of_time = False
        self._fatal = ""  # set by a result that lacks the sweep's metric
        self._began = began if began is not None else time.time()  # the allocation's start

    def run(self, jobs: JobSource | Iterable[Job]) -> Outcome:
        """Run until the source is exhausted and nothing runs (or, draining, until the
        running jobs have stopped). A plan's jobs already done (or pruned) are skipped, so
        running a sweep again resumes it."""
        source = jobs if isinstance(jobs, JobSource) else PlanSource(jobs)
        outcome = Outcome()
        retries: deque[tuple[Job, int]] = deque()
        previous = self._claim()
        try:
            while retries or self._running or not source.exhausted():
                self._heed_stops()
                if not self._draining and (why := self._drain_reason(outcome)):
                    self._drain(why)
                if self._draining or self._out_of_time:
                    if not self._running:
                        break
                    if self._draining:
                        self._wind_down()
                else:
                    self._fill(source, retries, outcome)
                self._pause()
                self._reap(source, retries, outcome)
        except KeyboardInterrupt:  # only where no handler could be installed
            self._terminate_all()
            raise RunStopped from None
        finally:
            if self.warm is not None:
                self.warm.close()
            self._release(previous)
        outcome.fatal = self._fatal
        outcome.left = bool(retries) or not source.exhausted() or outcome.interrupted > 0
        if outcome.left:
            outcome.stopped_by = self._draining or ("walltime" if self._out_of_time else "")
        if self._stopped_by:
            raise RunStopped(outcome)
        return outcome

    def _pause(self) -> None:
        """Between loop turns: warm workers wake the loop as soon as a job ends."""
        if self.warm is not None:
            self.warm.wait(POLL_SECONDS)
        else:
            time.sleep(POLL_SECONDS)

    def _worker_argv(self, node: str) -> list[str]:
        """The command that starts ``node``'s warm worker: it may run as many jobs at once
        as the node has slots, each with this supervisor's threads."""
        slots = next((n.slots for n in self.pool.nodes if n.name == node), 1)
        return self.launcher.worker_argv(self.store.root, node,
                                         slots * max(1, self.threads))

    def _claim(self) -> dict[int, Any]:
        """Catch the stop and drain signals (in the main thread), then start the lease;
        returns the handlers replaced."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, self._on_stop) for sig in STOP_SIGNALS}
            previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_sigusr1)
        try:
            self.lease.start()
        except BaseException:
            self._release(previous)
            raise
        return previous

    def _release(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        self.lease.release()  # its markers are all cleared by now

    @staticmethod
    def progressed(outcome: Outcome) -> bool:
        """Whether a stopped run moved the sweep on (a job ended, or one saved a checkpoint
        it will resume from): without that, continuing would only repeat the same cut."""
        return (outcome.done + outcome.pruned + outcome.failed + outcome.timed_out
                + outcome.checkpointed > 0)

    # -- walltime -----------------------------------------------------------------------
    def _drain_reason(self, outcome: Outcome) -> str:
        """The drain policy: why to stop starting jobs now ("" to go on), first match wins:
        SIGUSR1, the walltime's lead reached, a failure under --fail-fast, a bad metric."""
        if self._drain_asked:
            return "signal"
        if self.signal_lead and self.deadline is not None and time.time() >= self._drain_time():
            return "walltime"
        if self.fail_fast and (outcome.failed or outcome.timed_out):
            return "fail-fast"
        return "bad-metric" if self._fatal else ""

    def _drain_time(self) -> float:
        assert self.deadline is not None
        return self.deadline - self.signal_lead

    def _fits_in_time(self, job: Job) -> bool:
        """Whether ``job`` can finish before the drain. Unknown size: start it (its
        checkpoints make a cut-short run cheap). Longer than a whole allocation: start it
        too, it can only ever finish across several, checkpoint by checkpoint."""
        if self.deadline is None:
            return True
        estimate = self.durations.estimate(job, self.store.job_dir(job.id))
        if estimate is None or estimate > self._drain_time() - self._began:
            return True
        return time.time() + estimate <= self._drain_time()

    def _drain(self, why: str) -> None:
        """Stop starting jobs; ask the running ones to checkpoint and stop (SIGUSR1)."""
        self._draining = why
        self._drain_started = time.time()
        what = {"signal": "SIGUSR1 (walltime near)", "walltime": "the walltime is near",
                "fail-fast": "a job failed and --fail-fast is set",
                "stop": f"stop asked ({self._stopped_by}; {self.stop_grace:.0f} s to checkpoint)",
                "bad-metric": "a job did not report the sweep's metric"}[why]
        self.on_notice(f"draining: {what}; {len(self._running)} running job(s) asked to "
                       "checkpoint and stop")
        for running in self._running.values():
            _signal_group(running.process, signal.SIGUSR1)
        # Jobs that do not stop in time are killed (their last checkpoint stays): at the
        # deadline when it is known, else after a grace period (a stop plans its own).
        if self.deadline is not None:
            self._plan_kill(self.deadline - 2.0, term_first=False)
        elif why != "stop":
            self._plan_kill(self._drain_started + max(self.signal_lead, DRAIN_GRACE_SECONDS),
                            term_first=False)

    def _plan_kill(self, at: float, *, term_first: bool) -> None:
        """Jobs still running at ``at`` get SIGKILL, or first SIGTERM and SIGKILL
        TERMINATE_GRACE_SECONDS later; the earliest plan wins."""
        self._term_at = min(self._term_at, at)
        self._kill_at = min(self._kill_at, at + (TERMINATE_GRACE_SECONDS if term_first else 0))

    def _wind_down(self) -> None:
        """While draining: SIGTERM, then SIGKILL, what outlives the plan."""
        now = time.time()
        if now >= self._kill_at:
            sig = signal.SIGKILL
        elif now >= self._term_at and not self._termed:
            sig, self._termed = signal.SIGTERM, True
        else:
            return
        for running in self._running.values():
            _signal_group(running.process, sig)

    def _reap_settled(self) -> None:
        """Kill the launcher of a job that has written its result a while ago. Open MPI's
        mpirun sits out its kill timeout twice (see candle.launch._base) once a rank has
        failed or it was itself sent SIGTERM, though the job has ended; the result is all
        that counts. Only such launchers are looked at (all, while draining), once a
        second: an allocation of srun steps adds no load on the filesystem."""
        now = time.time()
        if now - self._settled_checked < SETTLED_CHECK_SECONDS:
            return
        self._settled_checked = now
        for running in self._running.values():
            if (running.lingers or self._draining) and self._result_settled(running, now):
                _signal_group(running.process, signal.SIGKILL)

    def _kill_overdue(self) -> None:
        """job_timeout: an attempt running longer gets SIGTERM (its whole process group),
        then SIGKILL TERMINATE_GRACE_SECONDS later; _finish then ends it ``timeout``.
        None is timed out while draining: the drain stops the jobs by its own plan."""
        if not self.job_timeout:
            return
        now = time.time()
        for running in self._running.values():
            if running.timed_out:
                if now >= running.timed_out + TERMINATE_GRACE_SECONDS:
                    _signal_group(running.process, signal.SIGKILL)
            elif not self._draining and now - running.started >= self.job_timeout:
                running.timed_out = now
                self.on_notice(f"job {running.job.id} ran past job_timeout "
                               f"({self.job_timeout:g} s): killing it")
                _signal_group(running.process, signal.SIGTERM)

    def _result_settled(self, running: _Running, now: float) -> bool:
        written = self.store.result_mtime(running.job.id)
        return (written is not None and written >= running.started
                and now - written > WRITTEN_GRACE_SECONDS)

    # -- stopping (SIGTERM, SIGINT) -----------------------------------------------------
    def _on_stop(self, signum: int, frame: Any) -> None:
        self._stop_signals.append(signum)

    def _heed_stops(self) -> None:
        """A first stop signal drains, with ``stop_grace`` for the jobs to checkpoint; a
        second one kills the running jobs at once."""
        if len(self._stop_signals) == self._stops_heeded:
            return
        self._stops_heeded = len(self._stop_signals)
        name = signal.Signals(self._stop_signals[-1]).name
        if self._stopped_by:
            self.on_notice(f"{name} again: killing the running jobs now")
            self._plan_kill(time.time(), term_first=False)
            return
        self._stopped_by = name
        if self._draining:
            self.on_notice(f"{name}: the running jobs have {self.stop_grace:.0f} s to stop")
        else:
            self._drain("stop")
        self._plan_kill(time.time() + self.stop_grace, term_first=True)

    def _fill(self, source: JobSource, retries: deque[tuple[Job, int]],
              outcome: Outcome) -> None:
        """Launch jobs while a slot is free: retries first, then the source's next job (an
        adaptive source asks for a new trial only here, when a slot is free)."""
        while self._room():
            placement = self.pool.place(self.ranks)
            if placement is None:
                return
            picked = self._next(source, retries, outcome)
            if picked is None:
                self.pool.release(placement)
                return
            if not self._fits_in_time(picked[0]):
                self.pool.release(placement)
                self._out_of_time = True
                retries.appendleft(picked)  # not started: left for the continuation
                self.on_notice(f"job {picked[0].id} would not finish in the walltime left; "
                               "starting nothing more here")
                return
            self._launch(picked[0], picked[1], placement)

    def _next(self, source: JobSource, retries: deque[tuple[Job, int]],
              outcome: Outcome) -> tuple[Job, int] | None:
        while retries:
            retry, tries = retries.popleft()
            if source.wanted(retry):
                return retry, tries
            self._give_up(retry, source, outcome, self.store.result(retry.id))
        while (job := source.next_job()) is not None:
            state = self.store.state(job.id)
            if state in (JobState.DONE, JobState.PRUNED):
                self.store.clear_running(job.id)  # left if a supervisor died at that moment
                outcome.skipped += 1
                result = self.store.result(job.id)
                self.on_event("skipped", job, result)
                source.on_result(job, state, result)
                continue
            return job, 1
        return None

    def _room(self) -> bool:
        return not self.max_concurrent or len(self._running) < self.max_concurrent

    def _on_sigusr1(self, signum: int, frame: Any) -> None:
        self._drain_asked = True

    def _launch(self, job: Job, tries: int, placement: Placement) -> None:
        store = self.store
        store.clear_result(job.id)  # a failed result from before moves to attempts.jsonl
        store.clear_progress(job.id)
        attempt = store.previous_attempts(job.id) + 1
        store.job_dir(job.id).mkdir(parents=True, exist_ok=True)
        store.write_params(job)
        request = LaunchRequest(store.root, job.id, self.ranks, attempt, self.threads,
                                placement, stop_grace=self.stop_grace)
        argv = self.launcher.argv(request)
        warm = self.warm if self.warm is not None and self.warm.usable() else None
        log = store.log_path(job.id).open("ab")
        where = " ".join(f"{host}:{count}" for host, count in placement.hosts)
        how = (f"forked by the warm worker: candle.job {' '.join(job_args(request))}"
               if warm is not None else " ".join(argv))
        log.write(f"=== attempt {attempt} on {where}: {how}\n".encode())
        log.flush()
        held = self.launcher.env(request)  # the launcher's defaults; the environment wins
        process: subprocess.Popen[bytes] | WarmJob
        if warm is not None:  # the node's worker forks the job (started once a node)
            # Its running marker names the job's own process once it exists, as `kill`
            # and `candle status` expect (the worker's pid would stand for all its jobs).
            process = warm.run(placement.hosts[0][0], job_args(request),
                               {**held, **job_env(request)}, store.log_path(job.id),
                               lambda pid: store.mark_running(job.id, pid, attempt,
                                                              owner=self.lease.owner))
        else:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL,
                                       env={**held, **self.env, **job_env(request)},
                                       start_new_session=True, preexec_fn=die_with_parent)
        if warm is None:
            store.mark_running(job.id, process.pid, attempt, owner=self.lease.owner)
        self._running[job.id] = _Running(job, process, log, attempt, tries, placement,
                                         lingers=OPENMPI_SIGKILL_TIMEOUT in held)
        self.on_event("started", job, None)

    def _finish(self, running: _Running, source: JobSource,
                retries: deque[tuple[Job, int]], outcome: Outcome) -> None:
        job, code = running.job, running.process.returncode
        assert code is not None  # reaped: it has exited
        running.log.close()
        result = self.store.result(job.id)
        status = (result or {}).get("status")
        # A complete result counts even if teardown (MPI finalise) then exited non-zero.
        if result is not None and status in (JobState.DONE, JobState.PRUNED):
            self.store.clear_running(job.id)
            state = JobState(status)
            if state is JobState.DONE:
                outcome.done += 1
                self.durations.record(job, time.time() - running.started, result)
            else:
                outcome.pruned += 1
            self.on_event(status, job, result)
            source.on_result(job, state, result)
            return
        if running.timed_out:  # whatever it wrote when killed (interrupted, failed)
            written = result
            result = {**self._crash_result(running, code, None),
                      "status": JobState.TIMEOUT.value,
                      "error": f"killed after job_timeout {self.job_timeout:g} s (attempt "
                               f"{running.tries} of {self.retries + 1})"}
            self.store.write_result(job.id, result)
            self._record_tensorboard(running, result, written)
        elif status == JobState.INTERRUPTED or (self._draining and result is None):
            self._interrupted(running, code, result, retries, outcome)
            return
        elif result is None or status != JobState.FAILED:
            written = result
            result = self._crash_result(running, code, result)
            self.store.write_result(job.id, result)
            self._record_tensorboard(running, result, written)
        self.store.clear_running(job.id)
        if result.get("missing_metric"):  # every job would fail alike: stop the sweep
            self._fatal = str(result.get("error") or "")
            self._give_up(job, source, outcome, result)
            return
        if running.tries <= self.retries and source.wanted(job):
            self.on_event("retry", job, result)
            retries.append((job, running.tries + 1))
            return
        self._give_up(job, source, outcome, result)

    def _reap(self, source: JobSource, retries: deque[tuple[Job, int]],
              outcome: Outcome) -> None:
        """The reaper: free the slots of launches that have exited and settle their jobs."""
        self._reap_settled()
        self._kill_overdue()
        source.poll([r.job for r in self._running.values()])
        if self.warm is not None:
            self.warm.pump()
        for job_id in [j for j, r in self._running.items() if r.process.poll() is not None]:
            running = self._running.pop(job_id)
            self.pool.release(running.placement)
            self._finish(running, source, retries, outcome)

    def _interrupted(self, running: _Running, code: int, result: dict[str, Any] | None,
                     retries: deque[tuple[Job, int]], outcome: Outcome) -> None:
        """Stopped at a checkpoint (or killed while draining): not a failure, no retry
        used. Draining, it is left for the continuation; otherwise (a signal from outside)
        it resumes here at once."""
        job = running.job
        checkpointed = result is not None
        if result is None:
            result = {**self._crash_result(running, code, None),
                      "status": JobState.INTERRUPTED.value,
                      "error": f"stopped while draining ({self._draining})"}
            self.store.write_result(job.id, result)
            self._record_tensorboard(running, result, None)
        self.store.clear_running(job.id)
        self.on_event("interrupted", job, result)
        if self._draining:
            outcome.interrupted += 1
            outcome.checkpointed += checkpointed
        else:
            retries.appendleft((job, running.tries))

    def _give_up(self, job: Job, source: JobSource, outcome: Outcome,
                 result: dict[str, Any] | None) -> None:
        if (result or {}).get("status") == JobState.TIMEOUT:
            outcome.timed_out += 1
            state = JobState.TIMEOUT
        else:
            outcome.failed += 1
            outcome.failed_ids.append(job.id)
            state = JobState.FAILED
        self.on_event(state.value, job, result)
        source.on_result(job, state, result)

    def _record_tensorboard(self, running: _Running, result: dict[str, Any],
                            written: dict[str, Any] | None) -> None:
        """The job's TensorBoard file to the result the supervisor wrote for it (the
        runner's own, if any, may say it is still running): with the epochs the runner's
        result had. record_job never raises."""
        earlier = written or {}
        shown = {"started": earlier.get("started") or running.started, **result}
        if not shown.get("history") and earlier.get("history"):
            shown["history"] = earlier["history"]
        record_job(self.store.job_dir(running.job.id), running.job, shown)

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
        return {"job_id": running.job.id, "status": JobState.FAILED.value, "error": reason,
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


def _signal_group(process: subprocess.Popen[bytes] | WarmJob, sig: signal.Signals) -> None:
    if isinstance(process, WarmJob):
        process.signal_group(sig)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
