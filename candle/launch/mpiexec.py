"""PBS (Cray PALS / MPICH Hydra): ``mpiexec -n R -ppn r --hosts h1,h2``."""

from __future__ import annotations

from candle.launch._base import LaunchRequest, job_argv


class MpiexecLauncher:
    """Hosts come from the placement (which the supervisor takes from $PBS_NODEFILE)."""

    def __init__(self, mpiexec: str = "mpiexec", cpu_bind: str = "depth") -> None:
        self.mpiexec = mpiexec
        self.cpu_bind = cpu_bind

    def argv(self, request: LaunchRequest) -> list[str]:
        argv = [self.mpiexec, "-n", str(request.ranks)]
        placement = request.placement
        if placement is not None:
            argv += ["-ppn", str(placement.ranks_per_node),
                     "--hosts", ",".join(placement.node_names)]
        if self.cpu_bind:
            argv += ["--cpu-bind", self.cpu_bind, "-d", str(max(1, request.threads))]
        return [*argv, *job_argv(request)]
