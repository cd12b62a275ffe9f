"""What runs inside a batch allocation (Slurm or PBS): the packing supervisor (pack mode)
and one array task (array mode). Both use the same Supervisor and SlotPool, with the
scheduler's `Allocation` (its slots; its launcher: srun steps, mpiexec), so a crash, a
retry or a result is handled the same way in both modes and on both schedulers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from candle.schedulers.batch.backend import Allocation, allocation_for
from candle.schedulers.batch.submit import batch_dir, chunk_job, submit_continuation
from candle.spec.model import Resources, walltime_seconds
from candle.spec.site import SiteConfig, load_site
from candle.store.lease import prune_expired
from candle.store.run_store import RunStore
from candle.supervisor.loop import EXIT_RESUMABLE, Outcome, Supervisor
from candle.supervisor.run import build_supervisor, job_source


def allocation_of(store: RunStore) -> Allocation:
    """The allocation side of the scheduler this run was submitted to."""
    return allocation_for(store.manifest().resources.scheduler)


def allocation_window(here: Allocation, resources: Resources) -> tuple[float, float]:
    """(start, end) of this allocation: the scheduler's end time, else now + the walltime."""
    limit = walltime_seconds(resources.walltime)
    end = here.allocation_end(here.this_job())
    end = end if end is not None else time.time() + limit
    return end - limit, end


def _supervisor(store: RunStore, here: Allocation, *, array_task: bool) -> Supervisor:
    """The run's supervisor (candle.supervisor.run.build_supervisor) on this allocation,
    with the allocation's launcher, slots and kill grace."""
    manifest = store.manifest()
    site = load_site(manifest.site_file) if manifest.site_file else SiteConfig()
    began, deadline = allocation_window(here, manifest.resources)
    return build_supervisor(
        store, manifest, here.launcher(site),
        here.allocation_pool(manifest.resources.gpus_per_node, site),
        threads=here.threads_per_job(), deadline=deadline, began=began,
        stop_grace=here.STOP_GRACE, array_task=array_task, on_notice=_say)


def _say(message: str) -> None:
    print(f"candle: {message}", file=sys.stderr, flush=True)


def supervise(run_dir: Path) -> Outcome:
    """Pack mode: keep this allocation's slots full until every job is done (an adaptive
    search: until its trial budget is used; this process is then the study's writer).

    When the walltime runs out with work left, the jobs checkpoint and stop, and a
    continuation allocation is submitted, to start when this one ends (afterany)."""
    store = RunStore(run_dir).require()
    with store.supervisor_lock():
        prune_expired(store.root)  # leases of supervisors that died hard
        here = allocation_of(store)
        supervisor = _supervisor(store, here, array_task=False)
        outcome = supervisor.run(job_source(store, on_notice=_say))
        this_job = here.this_job()
        if outcome.fatal:  # every job would repeat it: no continuation
            _say(f"stopped: {outcome.fatal}; fix search.metric (or the model) and run again")
            return outcome
        if outcome.left and outcome.stopped_by != "fail-fast" and this_job:
            if not Supervisor.progressed(outcome):
                _say("work left, but this allocation finished no job and saved no "
                     "checkpoint: not continuing (is the walltime shorter than one job?)")
                return outcome
            record = submit_continuation(store, this_job)
            _say(f"work left ({outcome.checkpointed} job(s) stopped at a checkpoint); "
                 f"continuation {record.job_id} starts when allocation {this_job} ends")
        return outcome


def array_task(run_dir: Path, chunk_name: str) -> int:
    """Array mode: run job number <this task's index> of ``chunk_name`` here.

    No retries here (a failed task leaves a failed result; `candle run` again resubmits
    what is not done). A job already done is not run again. A job stopped at its walltime
    warning puts its task back in the queue where the scheduler lets a user do that
    (Slurm's scontrol requeue); elsewhere (PBS: qrerun is for operators) the next
    `candle run`, or the next wave of `--wait`, resumes it from its checkpoint."""
    store = RunStore(run_dir).require()
    here = allocation_of(store)
    folder = batch_dir(store)
    chunk = folder / chunk_name
    index = here.array_index()
    wanted = chunk.read_text().split()[index]
    found = chunk_job(folder, chunk_name, index, wanted)  # not the whole plan
    jobs = [found] if found is not None else [
        job for job in store.jobs() if job.id == wanted]  # chunks from before issue 18
    if not jobs:
        raise SystemExit(f"{chunk}: job {wanted} is not in the run's plan")
    outcome = _supervisor(store, here, array_task=True).run(jobs)
    if outcome.checkpointed and outcome.stopped_by != "fail-fast":
        if here.CAN_REQUEUE:
            task = here.this_task()
            _say(f"job {wanted} stopped at a checkpoint; requeueing task {task}")
            here.requeue(task)
        else:
            _say(f"job {wanted} stopped at a checkpoint; `candle run` again resumes it")
        return EXIT_RESUMABLE
    return 1 if outcome.failed or outcome.timed_out else 0
