"""``python -m candle.job.worker RUN_DIR``: a node's warm worker (``resources.workers: warm``).

It pays once for what every job would pay again (starting Python, importing TensorFlow,
candle and the run's benchmark: ~2.5 s here, more from a shared filesystem), then forks
one child per job. Why fork rather than run jobs one after another in one interpreter:

- isolation is the process's own: a job that raises, segfaults, is OOM-killed or hangs
  takes down its child only; the worker, the other jobs and the next job are untouched;
- nothing job-specific has to be reset between jobs (Keras session and graph, seeds,
  environment, working directory, signal handlers, open files, TensorFlow's thread pools):
  every child starts from the same state, the worker's, in which no TensorFlow op has run
  (TensorFlow creates its runtime and thread pools at the first op, in the child);
- the worker never trains, so it never grows and never needs recycling.

The child is the job exactly as ``python -m candle.job`` runs it (same ``main``, same
signals: a drain's SIGUSR1 and a timeout's SIGTERM reach its own process group), so a
job's results are the same in both modes. The wire format is in candle.launch.warm.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from candle.launch.warm import decode, encode
from candle.supervisor.procs import die_with_parent

STDIN = 0


def preload(run_dir: Path) -> None:
    """Import what every job of this run imports (a failure here is the job's to report)."""
    with contextlib.suppress(Exception):
        import tensorflow  # noqa: F401  (import only: no op runs, so no runtime starts)
    import candle.job.__main__
    import candle.store.tensorboard  # noqa: F401

    with contextlib.suppress(Exception):
        from candle.benchmark import find_benchmark
        from candle.store.run_store import RunStore

        manifest = RunStore(run_dir).manifest()
        definition = find_benchmark(manifest.benchmark, manifest.base_dir)
        if definition is not None:
            definition.train_function()  # imports the benchmark's module


class Worker:
    """The fork server: reads requests on stdin, answers on its own copy of stdout."""

    def __init__(self, reply_fd: int) -> None:
        self.reply_fd = reply_fd
        self.children: dict[int, Any] = {}  # pid -> the supervisor's id for the job
        self.pids: dict[Any, int] = {}  # the job's id -> pid, while it runs
        self.selector: selectors.BaseSelector | None = None
        self.wake_read, self.wake_write = os.pipe()
        for fd in (self.wake_read, self.wake_write):
            os.set_blocking(fd, False)

    def reply(self, message: dict[str, Any]) -> None:
        data = encode(message)
        while data:
            data = data[os.write(self.reply_fd, data):]

    def serve(self) -> int:
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the select
        # Stop and drain signals are for the jobs, not for the worker: Slurm's scancel and
        # PBS's qdel signal every process of the step, the forked jobs too, and each must
        # live to reach its checkpoint, which it would not if the worker died (its children
        # die with it). The worker ends when its supervisor closes its stdin, or is killed.
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        selector = self.selector = selectors.DefaultSelector()
        selector.register(STDIN, selectors.EVENT_READ)
        selector.register(self.wake_read, selectors.EVENT_READ)
        pending = b""
        while True:
            for key, _ in selector.select():
                if key.fd == self.wake_read:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_read, 512):
                            pass
                    continue
                data = os.read(STDIN, 1 << 16)
                if not data:  # the supervisor is gone: so are its jobs
                    return self.shutdown()
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    message = decode(line)
                    if message is not None and self.handle(message):
                        return self.shutdown()
            self.reap()

    def handle(self, message: dict[str, Any]) -> bool:
        """One request; True when it asks the worker to exit."""
        op = message["op"]
        if op == "run":
            self.fork(message)
        elif op == "signal":
            pid = self.pids.get(message.get("id"))
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, int(message["signal"]))
        return bool(op == "exit")

    def fork(self, message: dict[str, Any]) -> None:
        try:
            pid = os.fork()
        except OSError as exc:  # no memory or process slots left: this job fails alone
            print(f"candle worker: cannot fork job {message.get('id')}: {exc}", file=sys.stderr)
            self.reply({"op": "exited", "id": message["id"], "code": 1})
            return
        if pid == 0:
            mine = [self.reply_fd, self.wake_read, self.wake_write]
            if self.selector is not None:
                mine.append(self.selector.fileno())  # type: ignore[attr-defined]
            run_child(message, close=tuple(mine))  # never returns
        self.children[pid] = message["id"]
        self.pids[message["id"]] = pid
        self.reply({"op": "started", "id": message["id"], "pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.children.pop(pid, None)
            if job is not None:
                self.pids.pop(job, None)
                self.reply({"op": "exited", "id": job,
                            "code": os.waitstatus_to_exitcode(status)})

    def shutdown(self) -> int:
        """Kill what still runs (its supervisor has gone or said goodbye) and exit."""
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        return 0


def run_child(message: dict[str, Any], close: tuple[int, ...]) -> None:
    """In the forked child: become the job (own session, default signals, the job's log
    as stdout and stderr, its variables, its folder), run it, and exit with its code."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT,
                    signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        for fd in close:  # the worker's own: its replies, its wake-up pipe, its selector
            with contextlib.suppress(OSError):
                os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, STDIN)
        log = os.open(message["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        die_with_parent()
        fresh_randomness()
        os.environ.update({str(k): str(v) for k, v in dict(message.get("env") or {}).items()})
        os.chdir(message.get("cwd") or "/")
        from candle.job.__main__ import main

        code = main([str(arg) for arg in message["args"]])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def fresh_randomness() -> None:
    """Unseeded randomness as a new process has it: a fork copies the worker's generators,
    so every job would otherwise draw the same "random" numbers (a model that seeds from
    its params is unaffected; one that does not would make every ensemble member alike)."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m candle.job.worker RUN_DIR", file=sys.stderr)
        return 2
    die_with_parent()  # a local worker dies with its supervisor (srun's does with srun)
    reply_fd = os.dup(1)  # the protocol's own copy: stray prints go to stderr from here on
    os.dup2(2, 1)
    began = time.perf_counter()
    preload(Path(args[0]))
    worker = Worker(reply_fd)
    worker.reply({"op": "ready", "pid": os.getpid(),
                  "seconds": round(time.perf_counter() - began, 3)})
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main())
