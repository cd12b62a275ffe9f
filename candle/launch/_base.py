"""How ONE job's ranks start. Launchers build argv; they never see sweeps."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class LaunchRequest:
    run_dir: Path
    job_id: str
    ranks: int
    attempt: int
    threads: int


def job_argv(request: LaunchRequest) -> list[str]:
    """The per-rank command: this interpreter running candle.job."""
    return [sys.executable, "-m", "candle.job", str(request.run_dir), request.job_id,
            "--attempt", str(request.attempt), "--threads", str(request.threads)]


class Launcher(Protocol):
    def argv(self, request: LaunchRequest) -> list[str]:
        """The full command that starts all ranks of the job (an argv, never a shell line)."""
        ...
