"""Local launch: a plain process for one rank, ``mpirun -np R --bind-to none`` for more."""

from __future__ import annotations

import os
from pathlib import Path

from candle.launch._base import LaunchRequest, job_argv, openmpi_env
from candle.launch.warm import worker_argv


class LocalLauncher:
    """Runs on this machine. mpirun flags follow what works on small nodes: no binding
    (concurrent jobs would otherwise all pin to the first cores), and root allowed when we
    are root. The slot pool has already decided that the ranks fit; mpirun only counts its
    own job, so it is told to oversubscribe when the sweep declared more slots than cores."""

    def __init__(self, mpirun: str = "mpirun", oversubscribe: bool = False) -> None:
        self.mpirun = mpirun
        self.oversubscribe = oversubscribe

    def argv(self, request: LaunchRequest) -> list[str]:
        if request.ranks == 1:
            return job_argv(request)
        argv = [self.mpirun, "-np", str(request.ranks), "--bind-to", "none"]
        if self.oversubscribe or request.ranks > (os.cpu_count() or 1):
            argv.append("--oversubscribe")
        if os.geteuid() == 0:
            argv.append("--allow-run-as-root")
        return [*argv, *job_argv(request)]

    def env(self, request: LaunchRequest) -> dict[str, str]:
        return openmpi_env(request)

    def worker_argv(self, run_dir: Path, node: str, cpus: int) -> list[str]:
        return worker_argv(run_dir)  # this machine: a plain child process
