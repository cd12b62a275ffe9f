"""How ONE job's ranks start. Launchers build argv; they never see sweeps."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Placement:
    """Where a job's ranks go: (node, ranks on it) pairs, and the GPUs it holds there.

    A job on one node gets some of its slots; a job on several nodes holds them whole, so
    the same GPU ids apply on each of its nodes.
    """

    hosts: tuple[tuple[str, int], ...]
    gpus: tuple[int, ...] = ()
    token: int = 0  # tells two equal-looking placements apart when they are released

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.hosts)

    @property
    def ranks_per_node(self) -> int:
        return max(count for _, count in self.hosts)


@dataclass(frozen=True)
class LaunchRequest:
    run_dir: Path
    job_id: str
    ranks: int
    attempt: int
    threads: int
    placement: Placement | None = field(default=None)
    stop_grace: float = 0.0  # seconds a stopped job gets to reach its checkpoint


def job_args(request: LaunchRequest) -> list[str]:
    """What ``python -m candle.job`` is given (a warm worker's child gets the same)."""
    return [str(request.run_dir), request.job_id, "--attempt", str(request.attempt),
            "--threads", str(request.threads)]


def job_argv(request: LaunchRequest) -> list[str]:
    """The per-rank command: this interpreter running candle.job."""
    return [sys.executable, "-m", "candle.job", *job_args(request)]


def job_env(request: LaunchRequest) -> dict[str, str]:
    """Variables every rank of the job needs: which GPUs it may bind (CANDLE_GPUS; each
    rank picks one by its local rank, see candle.launch.gpus)."""
    if request.placement is not None and request.placement.gpus:
        return {"CANDLE_GPUS": ",".join(str(g) for g in request.placement.gpus)}
    return {}


# Open MPI's mpirun/mpiexec, sent SIGTERM itself (a scheduler that signals every process
# of the job: Slurm's scancel, PBS's cgroup hook), sends its ranks SIGCONT, waits this many
# seconds, sends SIGTERM, waits again, then SIGKILLs them: 2 s in all by default, too short
# for any epoch to end. (Measured with Open MPI 4.1.4; the ranks are in their own process
# groups, so only mpirun forwards signals to them, and it forwards nothing while it waits.)
OPENMPI_SIGKILL_TIMEOUT = "OMPI_MCA_odls_base_sigkill_timeout"
# Open MPI busy-polls while a rank waits in MPI unless it sees its node oversubscribed (more
# ranks than slots). Horovod's background thread waits in MPI every cycle (~1 ms), beside
# TensorFlow threads that already take the rank's share of the cores: its spinning took
# CPU from training: NT3 at 2 ranks x 1 thread trained at 0.62x the samples/s of 1 rank x 2
# threads on 2 cores; yielding when idle, 1.24x (issue 19, scripts/perf/horovod_overhead.py).
OPENMPI_YIELD_WHEN_IDLE = "OMPI_MCA_mpi_yield_when_idle"


def openmpi_env(request: LaunchRequest) -> dict[str, str]:
    """For a multi-rank Open MPI launch: ranks yield the CPU while they wait in MPI
    (`OPENMPI_YIELD_WHEN_IDLE`), and Open MPI waits half the stop grace twice, so that its
    ranks get the whole grace to reach a checkpoint. The price of the latter: a job one of
    whose ranks crashes is also reaped that much later (mpirun kills the other ranks the
    same way)."""
    if request.ranks <= 1:
        return {}
    env = {OPENMPI_YIELD_WHEN_IDLE: "1"}
    if request.stop_grace > 0:
        env[OPENMPI_SIGKILL_TIMEOUT] = str(max(1, math.ceil(request.stop_grace / 2)))
    return env


class Launcher(Protocol):
    def argv(self, request: LaunchRequest) -> list[str]:
        """The full command that starts all ranks of the job (an argv, never a shell line)."""
        ...

    def env(self, request: LaunchRequest) -> dict[str, str]:
        """Variables the launch command itself needs (the supervisor's environment wins)."""
        ...

    def worker_argv(self, run_dir: Path, node: str, cpus: int) -> list[str]:
        """The command that starts one warm worker on ``node`` with ``cpus`` CPUs for its
        jobs (candle.launch.warm), its stdin and stdout forwarded to this process."""
        ...
