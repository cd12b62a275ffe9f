"""PBS's `Allocation`: its hosts ($PBS_NODEFILE: one line per MPI slot), this job's and
subjob's ids, its end (qstat, through the provider's query), and how a job's ranks start
there (mpiexec, per the site's MPI)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from candle.launch.mpiexec import MpiexecLauncher
from candle.schedulers._command import SchedulerError
from candle.schedulers.pbs.backend import query
from candle.schedulers.pbs.states import load_document, walltime_seconds
from candle.spec.site import SiteConfig
from candle.supervisor.slots import Node, SlotPool

log = logging.getLogger("candle.schedulers")

CAN_REQUEUE = False  # qrerun is for PBS operators and managers, not users
# qdel/walltime: SIGTERM, then SIGKILL kill_delay (default 10 s) later. Jobs get 4 s to
# checkpoint; the supervisor's SIGTERM→SIGKILL and its bookkeeping fit in the rest (a site
# with a longer kill_delay could give more).
STOP_GRACE = 4.0
STIME_FORMAT = "%a %b %d %H:%M:%S %Y"  # 'Sat Nov 21 22:37:58 2026', the server's local time
CLOCK_SLACK = 120.0  # seconds of skew tolerated between the server's clock and this node's


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


def allocation_end(job_id: str) -> float | None:
    """When this job's walltime runs out: its stime + Resource_List.walltime. stime is the
    server's local time; read here in this node's zone, it is checked against the
    document's epoch timestamp (the server's now): a start in the future, or longer ago
    than the walltime, means the zones differ, and the caller falls back to its own
    start + walltime."""
    if not job_id:
        return None
    try:
        document = load_document(query(["qstat", "-f", "-F", "json", job_id]))
        attrs = (document.get("Jobs") or {})[job_id]
        started = time.mktime(time.strptime(str(attrs["stime"]), STIME_FORMAT))
        limit = walltime_seconds(str(attrs["Resource_List"]["walltime"]))
        server_now = float(document.get("timestamp", time.time()))
    except (SchedulerError, KeyError, ValueError, TypeError):
        return None
    if not server_now - limit - CLOCK_SLACK <= started <= server_now + CLOCK_SLACK:
        log.warning("qstat's stime %r does not fit this node's clock; using the "
                    "supervisor's own start", attrs["stime"])
        return None
    return started + limit


def requeue(task_id: str) -> None:
    raise SchedulerError(["qrerun", task_id], 1, "", "PBS lets only operators rerun jobs")


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
