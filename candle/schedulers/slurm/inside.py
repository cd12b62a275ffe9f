"""What runs inside a Slurm allocation: the packing supervisor (pack mode) and one array
task (array mode). Both use the same Supervisor, SlotPool and srun launcher as each other,
so a crash, a retry or a result is handled the same way in both modes."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from candle.launch.srun import SrunLauncher
from candle.schedulers.slurm import backend
from candle.schedulers.slurm.backend import hostnames
from candle.schedulers.slurm.submit import submit_continuation
from candle.spec.model import walltime_seconds
from candle.spec.site import SiteConfig, load_site
from candle.store.run_store import RunStore
from candle.supervisor.loop import EXIT_RESUMABLE, Outcome, Supervisor
from candle.supervisor.run import JOB_ENV, job_source
from candle.supervisor.slots import Node, SlotPool


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


def allocation_window(resources: dict[str, Any]) -> tuple[float, float]:
    """(start, end) of this allocation: squeue's end time, else now + the walltime asked."""
    limit = walltime_seconds(resources["walltime"])
    end = backend.allocation_end(os.environ.get("SLURM_JOB_ID", ""))
    end = end if end is not None else time.time() + limit
    return end - limit, end


def _supervisor(store: RunStore, *, retries: int, max_concurrent: int) -> Supervisor:
    """The same supervisor for both modes, on this allocation with srun steps."""
    meta = store.meta()
    resources = meta["resources"]
    site = load_site(Path(resources["site"])) if resources.get("site") else SiteConfig()
    began, deadline = allocation_window(resources)
    return Supervisor(
        store, SrunLauncher(mpi=site.mpi),
        pool=allocation_pool(int(resources.get("gpus_per_node") or 0)),
        max_concurrent=max_concurrent, ranks_per_job=int(resources["ranks_per_job"]),
        retries=retries, threads_per_job=int(os.environ.get("SLURM_CPUS_PER_TASK", "1")),
        env=JOB_ENV, deadline=deadline, began=began,
        signal_lead=float(resources.get("signal_lead") or 0),
        fail_fast=bool(meta.get("fail_fast")), on_notice=_say)


def _say(message: str) -> None:
    print(f"candle: {message}", file=sys.stderr, flush=True)


def supervise(run_dir: Path) -> Outcome:
    """Pack mode: keep this allocation's slots full until every job is done (an adaptive
    search: until its trial budget is used; this process is then the study's writer).

    When the walltime runs out with work left, the jobs checkpoint and stop, and a
    continuation allocation is submitted, to start when this one ends (afterany)."""
    store = RunStore(run_dir).require()
    meta = store.meta()
    with store.supervisor_lock():
        supervisor = _supervisor(
            store, retries=int(meta.get("retries", 1)),
            max_concurrent=int(meta["resources"].get("max_concurrent") or 0))
        outcome = supervisor.run(job_source(store))
        this_job = os.environ.get("SLURM_JOB_ID", "")
        if outcome.left and outcome.stopped_by != "fail-fast" and this_job:
            if not Supervisor.progressed(outcome):
                _say("work left, but this allocation finished no job and saved no "
                     "checkpoint: not continuing (is the walltime shorter than one job?)")
                return outcome
            record = submit_continuation(store, this_job)
            _say(f"work left ({outcome.checkpointed} job(s) stopped at a checkpoint); "
                 f"continuation {record.job_id} starts when allocation {this_job} ends")
        return outcome


def array_task(run_dir: Path, chunk: Path) -> int:
    """Array mode: run job number $SLURM_ARRAY_TASK_ID of ``chunk`` on this allocation.

    No retries here (a failed task leaves a failed result; `candle run` again resubmits
    what is not done). A job already done is not run again. A job stopped at its walltime
    warning puts its task back in the queue (scontrol requeue), to resume there."""
    store = RunStore(run_dir).require()
    wanted = chunk.read_text().split()[int(os.environ["SLURM_ARRAY_TASK_ID"])]
    jobs = [job for job in store.jobs() if job.id == wanted]
    if not jobs:
        raise SystemExit(f"{chunk}: job {wanted} is not in the run's plan")
    outcome = _supervisor(store, retries=0, max_concurrent=0).run(jobs)
    if outcome.checkpointed and outcome.stopped_by != "fail-fast":
        task = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        _say(f"job {wanted} stopped at a checkpoint; requeueing task {task}")
        backend.requeue(task)
        return EXIT_RESUMABLE
    return 1 if outcome.failed else 0
