"""Start one job's ranks: local mpirun now; srun / mpiexec launchers plug in beside it."""

from candle.launch._base import Launcher, LaunchRequest, job_argv
from candle.launch.local import LocalLauncher

__all__ = ["LaunchRequest", "Launcher", "LocalLauncher", "job_argv"]
