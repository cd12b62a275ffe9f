"""Every call to a scheduler command goes through `run_cmd`: a timeout, retries with
backoff on the errors a busy controller gives, a log line, and one exception type that
carries the exit code, stdout and stderr."""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("candle.schedulers")

TRANSIENT = (
    "Socket timed out",
    "Resource temporarily unavailable",
    "Unable to contact slurm controller",
    "slurm_load_jobs error",
    "Connection refused",
    "Zero Bytes were transmitted or received",
    "Transaction retry",
    "pbs_iff: cannot connect",
    "Server busy",
)


class SchedulerError(RuntimeError):
    def __init__(self, argv: Sequence[str], code: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
        super().__init__(f"{shlex.join(argv)} exited {code}: {detail}")

    @property
    def transient(self) -> bool:
        return self.code == -1 or any(t in self.stderr + self.stdout for t in TRANSIENT)


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    first_delay: float = 1.0
    factor: float = 2.0
    timeout: float = 60.0


def run_once(argv: Sequence[str], timeout: float, stdin: str | None = None,
             cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              input=stdin, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        raise SchedulerError(argv, -1, out, f"timed out after {timeout:.0f} s") from None
    except FileNotFoundError:
        raise SchedulerError(argv, 127, "", f"{argv[0]}: command not found") from None
    if proc.returncode != 0:
        raise SchedulerError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def run_cmd(
    argv: Sequence[str],
    *,
    retry: Retry = Retry(),
    stdin: str | None = None,
    before_retry: Callable[[SchedulerError], str | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    cwd: Path | None = None,
) -> str:
    """Run ``argv``; retry transient failures with exponential backoff.

    ``before_retry`` is asked before each retry and may return the output that the failed
    call would have produced (e.g. the job id of an sbatch that did reach the controller
    before its reply was lost): then there is no retry, so nothing is submitted twice.
    """
    delay = retry.first_delay
    for attempt in range(1, retry.attempts + 1):
        try:
            out = run_once(argv, retry.timeout, stdin, cwd)
            log.debug("%s -> ok", shlex.join(argv))
            return out
        except SchedulerError as exc:
            if not exc.transient or attempt == retry.attempts:
                raise
            log.warning("%s (attempt %d of %d; retrying in %.0f s)", exc, attempt,
                        retry.attempts, delay)
            sleep(delay)
            delay *= retry.factor
            if before_retry is not None:
                found = before_retry(exc)
                if found is not None:
                    return found
    raise AssertionError("unreachable")
