"""Slurm's `Allocation`: its nodes and tasks (SLURM_* variables), its end time, requeue,
and how a job's ranks start there (one srun step each)."""

from __future__ import annotations

import os
import re
from datetime import datetime

from candle.launch.srun import SrunLauncher
from candle.schedulers._command import Retry, SchedulerError, run_cmd
from candle.spec.site import SiteConfig
from candle.supervisor.slots import Node, SlotPool

CAN_REQUEUE = True  # scontrol requeue works on one's own jobs
# scancel/preemption: SIGTERM, then SIGKILL KillWait (default 30 s) later. Jobs get 20 s to
# checkpoint; the supervisor's SIGTERM→SIGKILL and its bookkeeping fit in the rest.
STOP_GRACE = 20.0
RETRY = Retry(attempts=3, first_delay=1.0, timeout=60.0)


def hostnames(nodelist: str) -> list[str]:
    """'node[1-3]' → ['node1', 'node2', 'node3'] (scontrol does Slurm's own expansion)."""
    out = run_cmd(["scontrol", "show", "hostnames", nodelist], retry=RETRY)
    return [line.strip() for line in out.splitlines() if line.strip()]


def tasks_per_node(value: str) -> list[int]:
    """SLURM_TASKS_PER_NODE ('2(x3),1') → [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            raise ValueError(f"cannot read SLURM_TASKS_PER_NODE={value!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def allocation_pool(gpus_per_node: int, site: SiteConfig) -> SlotPool:
    """This allocation's nodes, each with the tasks Slurm gave it as slots."""
    names = hostnames(os.environ["SLURM_JOB_NODELIST"])
    counts = tasks_per_node(os.environ.get("SLURM_TASKS_PER_NODE", "1"))
    if len(counts) != len(names):
        counts = [counts[0]] * len(names)
    return SlotPool([Node(name, count, gpus_per_node)
                     for name, count in zip(names, counts, strict=True)])


def allocation_end(job_id: str) -> float | None:
    """When this batch job's walltime runs out (epoch seconds), from squeue; None if unknown."""
    try:
        out = run_cmd(["squeue", "-h", "-j", job_id, "-o", "%e"], retry=RETRY)
        return datetime.fromisoformat(out.strip().splitlines()[0]).timestamp()
    except (SchedulerError, ValueError, IndexError):
        return None


def requeue(job_id: str) -> None:
    """Put a (running) batch job back in the queue; it runs again with the same id."""
    run_cmd(["scontrol", "requeue", job_id], retry=RETRY)


def launcher(site: SiteConfig) -> SrunLauncher:
    return SrunLauncher(mpi=site.mpi)


def this_job() -> str:
    return os.environ.get("SLURM_JOB_ID", "")


def array_index() -> int:
    return int(os.environ["SLURM_ARRAY_TASK_ID"])


def this_task() -> str:
    return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"


def threads_per_job() -> int:
    """Threads per rank: --cpus-per-task where the script asked for it, else the CPUs Slurm
    gave on this node shared by the tasks it placed here (a whole node where nodes are not
    shared, so a site whose node size candle does not know still uses its cores)."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return max(1, int(os.environ["SLURM_CPUS_PER_TASK"]))
    cpus = os.environ.get("SLURM_CPUS_ON_NODE", "")
    if not cpus.isdigit():
        return 1
    try:
        here = tasks_per_node(os.environ.get("SLURM_TASKS_PER_NODE", "1"))[0]
    except ValueError:
        here = 1
    return max(1, int(cpus) // max(1, here))
