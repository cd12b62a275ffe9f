"""PBS: ``mpiexec`` with the hosts of the job's placement (taken from $PBS_NODEFILE).

Three MPI stacks spell it differently, chosen by the site config's ``mpi``:
- ``pals``: Cray PALS (Polaris, Aurora): ``mpiexec -n R -ppn r --hosts h1,h2 --cpu-bind
  depth -d t`` (ranks spaced t cores apart; each rank finds its GPU by PALS_LOCAL_RANKID).
- ``hydra``: MPICH's Hydra: ``mpiexec -n R -ppn r -hosts h1,h2``.
- ``openmpi``: Open MPI without PBS integration (the Debian build): ``mpiexec -n R --host
  h1:r,h2:r --bind-to none``.
"""

from __future__ import annotations

import os
from pathlib import Path

from candle.launch._base import LaunchRequest, job_argv, openmpi_env
from candle.launch.warm import worker_argv

FLAVOURS = ("pals", "hydra", "openmpi")


class MpiexecLauncher:
    def __init__(self, mpiexec: str = "mpiexec", flavour: str = "pals",
                 cpu_bind: str = "depth") -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown mpiexec flavour {flavour!r} (one of {FLAVOURS})")
        self.mpiexec = mpiexec
        self.flavour = flavour
        self.cpu_bind = cpu_bind

    def argv(self, request: LaunchRequest) -> list[str]:
        argv = [self.mpiexec, "-n", str(request.ranks)]
        placement = request.placement
        if self.flavour == "openmpi":
            if placement is not None:
                argv += ["--host", ",".join(f"{name}:{count}" for name, count in placement.hosts)]
            argv += ["--bind-to", "none"]
            if os.geteuid() == 0:
                argv.append("--allow-run-as-root")
            return [*argv, *job_argv(request)]
        if placement is not None:
            hosts = ",".join(placement.node_names)
            argv += ["-ppn", str(placement.ranks_per_node),
                     "--hosts" if self.flavour == "pals" else "-hosts", hosts]
        if self.flavour == "pals" and self.cpu_bind:
            argv += ["--cpu-bind", self.cpu_bind, "-d", str(max(1, request.threads))]
        return [*argv, *job_argv(request)]

    def worker_argv(self, run_dir: Path, node: str, cpus: int) -> list[str]:
        """One process on ``node`` (mpiexec forwards its stdin to rank 0, the only one, and
        the rank's stdout back); its forked jobs share the node's CPUs (no binding)."""
        if self.flavour == "openmpi":
            argv = [self.mpiexec, "-n", "1", "--host", f"{node}:1", "--bind-to", "none"]
            if os.geteuid() == 0:
                argv.append("--allow-run-as-root")
        elif self.flavour == "pals":
            argv = [self.mpiexec, "-n", "1", "-ppn", "1", "--hosts", node,
                    "--cpu-bind", "none"]
        else:
            argv = [self.mpiexec, "-n", "1", "-ppn", "1", "-hosts", node]
        return [*argv, *worker_argv(run_dir)]

    def env(self, request: LaunchRequest) -> dict[str, str]:
        return openmpi_env(request) if self.flavour == "openmpi" else {}
