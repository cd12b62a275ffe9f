"""Inside a PBS allocation: its hosts ($PBS_NODEFILE: one line per MPI slot), this job's
and subjob's ids, and how a job's ranks start there (mpiexec, per the site's MPI)."""

from __future__ import annotations

import os
from pathlib import Path

from candle.launch.mpiexec import MpiexecLauncher
from candle.spec.site import SiteConfig
from candle.supervisor.slots import Node, SlotPool


def nodefile_hosts(path: Path) -> list[tuple[str, int]]:
    """$PBS_NODEFILE → [(host, slots)] in order: PBS writes each host once per mpiprocs."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        host = line.strip()
        if host:
            counts[host] = counts.get(host, 0) + 1
    return list(counts.items())


def allocation_pool(gpus_per_node: int, site: SiteConfig) -> SlotPool:
    hosts = nodefile_hosts(Path(os.environ["PBS_NODEFILE"]))
    return SlotPool([Node(name, slots, gpus_per_node) for name, slots in hosts])


def launcher(site: SiteConfig) -> MpiexecLauncher:
    return MpiexecLauncher(flavour=site.mpi)


def this_job() -> str:
    return os.environ.get("PBS_JOBID", "")


def array_index() -> int:
    """PBS_ARRAY_INDEX in a subjob; 0 in a chunk of one job, submitted as a plain job."""
    return int(os.environ.get("PBS_ARRAY_INDEX") or 0)


def this_task() -> str:
    return os.environ.get("PBS_JOBID", "")


def threads_per_job() -> int:
    """CPUs per rank: the chunk's ncpus (PBS exports NCPUS) over its MPI slots here."""
    ncpus = int(os.environ.get("NCPUS", "1") or 1)
    hosts = nodefile_hosts(Path(os.environ["PBS_NODEFILE"])) if "PBS_NODEFILE" in os.environ else []
    slots = hosts[0][1] if hosts else 1
    return max(1, ncpus // max(1, slots))
