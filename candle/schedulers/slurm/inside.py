"""What runs inside a Slurm allocation: the packing supervisor (pack mode) and one array
task (array mode). Both use the same Supervisor, SlotPool and srun launcher as each other,
so a crash, a retry or a result is handled the same way in both modes."""

from __future__ import annotations

import os
import re
from pathlib import Path

from candle.launch.srun import SrunLauncher
from candle.schedulers.slurm.backend import hostnames
from candle.spec.site import SiteConfig, load_site
from candle.store.run_store import RunStore
from candle.supervisor.loop import Outcome, Supervisor
from candle.supervisor.slots import Node, SlotPool

JOB_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def tasks_per_node(value: str) -> list[int]:
    """SLURM_TASKS_PER_NODE ('2(x3),1') → [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            raise ValueError(f"cannot read SLURM_TASKS_PER_NODE={value!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def allocation_pool(gpus_per_node: int) -> SlotPool:
    """This allocation's nodes, each with the tasks Slurm gave it as slots."""
    names = hostnames(os.environ["SLURM_JOB_NODELIST"])
    counts = tasks_per_node(os.environ.get("SLURM_TASKS_PER_NODE", "1"))
    if len(counts) != len(names):
        counts = [counts[0]] * len(names)
    return SlotPool([Node(name, count, gpus_per_node)
                     for name, count in zip(names, counts, strict=True)])


def _site(meta: dict[str, object]) -> SiteConfig:
    resources = meta.get("resources") or {}
    assert isinstance(resources, dict)
    site = resources.get("site")
    return load_site(Path(str(site))) if site else SiteConfig()


def supervise(run_dir: Path) -> Outcome:
    """Pack mode: keep this allocation's slots full until every job is done."""
    store = RunStore(run_dir).require()
    meta = store.meta()
    resources = meta["resources"]
    pool = allocation_pool(int(resources.get("gpus_per_node") or 0))
    with store.supervisor_lock():
        supervisor = Supervisor(
            store, SrunLauncher(mpi=_site(meta).mpi), pool=pool,
            max_concurrent=int(resources.get("max_concurrent") or 0),
            ranks_per_job=int(resources["ranks_per_job"]), retries=int(meta.get("retries", 1)),
            threads_per_job=int(os.environ.get("SLURM_CPUS_PER_TASK", "1")), env=JOB_ENV)
        return supervisor.run(store.jobs())


def array_task(run_dir: Path, chunk: Path) -> int:
    """Array mode: run job number $SLURM_ARRAY_TASK_ID of ``chunk`` on this allocation.

    No retries here (a failed task leaves a failed result; `candle run` again resubmits
    what is not done). A job already done is not run again."""
    store = RunStore(run_dir).require()
    meta = store.meta()
    resources = meta["resources"]
    index = int(os.environ["SLURM_ARRAY_TASK_ID"])
    job_ids = chunk.read_text().split()
    wanted = job_ids[index]
    jobs = [job for job in store.jobs() if job.id == wanted]
    if not jobs:
        raise SystemExit(f"{chunk}: job {wanted} is not in the run's plan")
    pool = allocation_pool(int(resources.get("gpus_per_node") or 0))
    supervisor = Supervisor(
        store, SrunLauncher(mpi=_site(meta).mpi), pool=pool,
        ranks_per_job=int(resources["ranks_per_job"]), retries=0,
        threads_per_job=int(os.environ.get("SLURM_CPUS_PER_TASK", "1")), env=JOB_ENV)
    outcome = supervisor.run(jobs)
    return 1 if outcome.failed else 0
