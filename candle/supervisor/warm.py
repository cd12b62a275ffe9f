"""The supervisor's side of warm workers: one per node, started once, asked to run jobs.

A job run by a warm worker is a :class:`WarmJob`, which looks to the supervisor loop like
the Popen of a job launched on its own (``poll``, ``wait``, ``returncode``, ``pid``) and is
signalled through its worker (the job's process group may sit on another node). A worker
that dies takes its running jobs with it (they end killed by SIGKILL and are retried like
any crash); the next job on that node starts a new worker.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from candle.launch.warm import decode, encode
from candle.supervisor.procs import die_with_parent

WORKER_LOGS = "workers"  # <run dir>/workers/<node>.log: each worker's own stderr
STOP_SECONDS = 5.0  # a worker asked to exit gets this long before it is killed


class WarmJob:
    """A job running in a warm worker's forked child."""

    def __init__(self, worker: WarmWorker, token: int,
                 on_started: Callable[[int], None] | None = None) -> None:
        self.worker = worker
        self.token = token
        self.returncode: int | None = None
        self.child_pid = 0  # on the worker's node, once it says so
        # Called once the job's process exists, with the pid that stands for it here.
        self.on_started = on_started or (lambda pid: None)

    @property
    def pid(self) -> int:
        """The local process that stands for the job (the worker or its srun/mpiexec), as a
        launched job's pid is its launcher's: alive while the job can be."""
        return self.worker.process.pid

    def poll(self) -> int | None:
        if self.returncode is None:
            self.worker.pump()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"warm job {self.token}", timeout or 0)
            self.worker.wait_readable(0.2 if left is None else min(0.2, left))
        assert self.returncode is not None
        return self.returncode

    def signal_group(self, sig: int) -> None:
        """To the job's process group, by its worker (which knows the child's pid)."""
        if self.returncode is None:
            self.worker.send({"op": "signal", "id": self.token, "signal": int(sig)})


class WarmWorker:
    """One worker process (or its launcher: srun, mpiexec) and the jobs it runs."""

    def __init__(self, node: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.node = node
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                start_new_session=True, preexec_fn=die_with_parent)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin: IO[bytes] = self.process.stdin
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._out, False)
        self._pending = b""
        self.jobs: dict[int, WarmJob] = {}
        self.alive = True
        self.ready = False
        self.direct = False  # set by "ready"

    def fileno(self) -> int:
        return self._out

    def send(self, message: dict[str, Any]) -> None:
        if not self.alive:
            return
        try:
            self._stdin.write(encode(message))
            self._stdin.flush()
        except (BrokenPipeError, ValueError):
            self._died()

    def pump(self) -> None:
        """Read what the worker said (never blocks) and settle the jobs it names."""
        while self.alive:
            try:
                data = os.read(self._out, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                self._died()
                return
            self._pending += data
            *lines, self._pending = self._pending.split(b"\n")
            for line in lines:
                message = decode(line)
                if message is not None:
                    self._handle(message)

    def wait_readable(self, seconds: float) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._out, selectors.EVENT_READ)
            selector.select(seconds)

    def _handle(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "ready":
            self.ready = True
            # Our own child (a local worker): its jobs' pids are this machine's. Through
            # srun or mpiexec they are another node's; the launcher stands for them here.
            self.direct = int(message.get("pid") or 0) == self.process.pid
            return
        job = self.jobs.get(int(message.get("id", -1)))
        if job is None:
            return
        if op == "started":
            job.child_pid = int(message.get("pid") or 0)
            job.on_started(job.child_pid if self.direct and job.child_pid else
                           self.process.pid)
        elif op == "exited":
            job.returncode = int(message["code"])
            del self.jobs[job.token]

    def _died(self) -> None:
        """The worker is gone (crashed, killed, its node lost): so are its children (they
        die with it), which end as if SIGKILLed."""
        self.alive = False
        for job in self.jobs.values():
            job.returncode = -int(signal.SIGKILL)
        self.jobs.clear()
        with contextlib.suppress(OSError):
            self._stdin.close()

    def close(self) -> None:
        """Ask the worker to exit (it kills what still runs), then make sure it did."""
        self.send({"op": "exit"})
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.pump()
        self._died()
        if self.process.stdout is not None:
            self.process.stdout.close()


class WarmWorkers:
    """The run's workers, one per node, started on the first job placed there."""

    def __init__(self, run_dir: Path, start_argv: Callable[[str], list[str]],
                 env: dict[str, str], notice: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.start_argv = start_argv  # node -> the command that starts its worker
        self.env = env
        self.notice = notice
        self.workers: dict[str, WarmWorker] = {}
        self._tokens = itertools.count(1)
        self.broken = False  # a worker died before it was ready: jobs run as processes

    def usable(self) -> bool:
        """Whether jobs go to workers: not after one failed to start (the same import would
        fail again; its log says why)."""
        if not self.broken:
            self.pump()
            for node, worker in self.workers.items():
                if not worker.alive and not worker.ready:
                    self.broken = True
                    self.notice(f"the warm worker on {node} failed to start (see "
                                f"{self.run_dir / WORKER_LOGS / (node + '.log')}): jobs run "
                                "as their own processes from now on")
                    break
        return not self.broken

    def run(self, node: str, args: list[str], env: dict[str, str], log: Path,
            on_started: Callable[[int], None] | None = None) -> WarmJob:
        """Hand one job to ``node``'s worker (started now if it has none, or it died);
        ``on_started`` gets the job's pid (its launcher's, on another node) once it runs."""
        worker = self.workers.get(node)
        if worker is None or not worker.alive:
            if worker is not None:
                self.notice(f"the warm worker on {node} died; starting a new one")
            worker = WarmWorker(node, self.start_argv(node), self.env,
                                self.run_dir / WORKER_LOGS / f"{node}.log")
            self.workers[node] = worker
        job = WarmJob(worker, next(self._tokens), on_started)
        worker.jobs[job.token] = job
        worker.send({"op": "run", "id": job.token, "args": args, "env": env, "log": str(log),
                     "cwd": os.getcwd()})
        return job

    def pump(self) -> None:
        for worker in self.workers.values():
            worker.pump()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking as soon as a worker says something (a job ended:
        its slot is filled at once rather than at the next poll)."""
        live = [w for w in self.workers.values() if w.alive]
        if not live:
            time.sleep(seconds)
            return
        with selectors.DefaultSelector() as selector:
            for worker in live:
                selector.register(worker.fileno(), selectors.EVENT_READ)
            selector.select(seconds)
        self.pump()

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers.clear()
