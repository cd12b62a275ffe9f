"""Slurm: each job is one ``srun --exact`` step inside the allocation (PMIx wire-up)."""

from __future__ import annotations

from pathlib import Path

from candle.launch._base import OPENMPI_YIELD_WHEN_IDLE, LaunchRequest, job_argv
from candle.launch.warm import worker_argv


class SrunLauncher:
    """``srun --exact -N n -n R --nodelist=…``: --exact keeps a step to the CPUs it asked
    for, so several steps share a node instead of queueing behind each other."""

    def __init__(self, srun: str = "srun", mpi: str = "pmix") -> None:
        self.srun = srun
        self.mpi = mpi

    def argv(self, request: LaunchRequest) -> list[str]:
        mpi = [f"--mpi={self.mpi}"] if self.mpi else []  # "": the cluster's MpiDefault
        argv = [self.srun, "--exact", *mpi, "-n", str(request.ranks),
                f"--cpus-per-task={max(1, request.threads)}", "--kill-on-bad-exit=1"]
        placement = request.placement
        if placement is not None:
            argv += ["-N", str(len(placement.hosts)),
                     f"--nodelist={','.join(placement.node_names)}",
                     f"--ntasks-per-node={placement.ranks_per_node}"]
        return [*argv, *job_argv(request)]

    def env(self, request: LaunchRequest) -> dict[str, str]:
        """srun's ranks are Slurm's step tasks (no mpirun to hold back); an Open MPI rank
        among them still busy-polls while it waits in MPI unless told to yield (other MPIs
        ignore the variable)."""
        return {OPENMPI_YIELD_WHEN_IDLE: "1"} if request.ranks > 1 else {}

    def worker_argv(self, run_dir: Path, node: str, cpus: int) -> list[str]:
        """One step of one task on ``node`` holding the CPUs of all the jobs it will run at
        once (its forked jobs share them); srun forwards its stdin to the task (task 0
        is the only one) and the task's stdout back. No MPI: its jobs have one rank."""
        return [self.srun, "--exact", "--mpi=none", "-N", "1", "-n", "1",
                f"--nodelist={node}", f"--cpus-per-task={max(1, cpus)}",
                "--kill-on-bad-exit=1", *worker_argv(run_dir)]
