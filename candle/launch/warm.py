"""The warm worker's wire format: what a supervisor and a node's worker say to each other.

A warm worker (``python -m candle.job.worker RUN_DIR``, one per node) imports TensorFlow,
candle and the run's benchmark once, then forks one child per job it is asked to run: the
child is the job, exactly as ``python -m candle.job`` would run it, in its own process
group. The supervisor talks to the worker over the worker's stdin and stdout (which srun
and mpiexec forward to and from a remote node), one JSON object a line:

- supervisor -> worker: ``{"op": "run", "id", "args", "env", "log", "cwd"}``,
  ``{"op": "signal", "id", "signal"}`` (to the job's process group), ``{"op": "exit"}``;
- worker -> supervisor: ``{"op": "ready", "pid", "seconds"}`` once its imports are done,
  ``{"op": "started", "id", "pid"}``, ``{"op": "exited", "id", "code"}`` (a negative code:
  killed by that signal, like Popen's returncode).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

WORKER_MODULE = "candle.job.worker"


def worker_argv(run_dir: Path) -> list[str]:
    """The command that starts one warm worker (a launcher wraps it for a remote node)."""
    return [sys.executable, "-m", WORKER_MODULE, str(run_dir)]


def encode(message: dict[str, Any]) -> bytes:
    """One message, one line."""
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict[str, Any] | None:
    """A message, or None for a line that is not one (a stray print on a remote node's
    stdout must not stop the supervisor)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "op" in message else None
