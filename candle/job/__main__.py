"""``python -m candle.job RUN_DIR JOB_ID``: what the launcher starts on every rank."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from candle.job import interrupt
from candle.job.runner import execute, mpi_rank_and_size
from candle.launch.gpus import bind_gpu
from candle.plan.jobs import Job, fold_seed, job_design
from candle.state import JobState
from candle.store.atomic import read_json
from candle.store.run_store import RunStore
from candle.store.tensorboard import record_job
from candle.supervisor.procs import die_with_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m candle.job")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("job_id")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    die_with_parent()  # ranks under mpirun: die with it
    interrupt.install()  # walltime/preemption: stop at the next epoch end, checkpointed
    bind_gpu(os.environ)  # before anything imports TensorFlow

    store = RunStore(args.run_dir).require()
    manifest = store.manifest()
    params_file = store.job_dir(args.job_id) / "params.json"
    try:
        job = Job.from_record(read_json(params_file))
    except (OSError, ValueError, TypeError) as exc:
        print(f"{params_file}: cannot read the job's parameters: {exc}", file=sys.stderr)
        return 2
    # What the job computes comes from its own record (the settings its id hashes), not
    # from run.json, which a later `candle run` of a changed sweep rewrites.
    settings: dict[str, Any] = job.settings if job.settings else {
        "cv_seed": manifest.cv_seed, "stratify": manifest.stratify, "uq": manifest.uq}
    adaptive = manifest.optuna
    parent_model = _parent_model(store, job)
    result = execute(
        job, manifest.benchmark, store.job_dir(job.id), manifest.base_dir,
        metrics=manifest.metrics,
        cv_seed=fold_seed(settings, job),
        stratify=bool(settings.get("stratify", True) is not False),
        attempt=args.attempt, threads=args.threads, report_epochs=adaptive is not None,
        wait_for_verdict=adaptive is not None and adaptive.pruning, uq=settings.get("uq"),
        design=job_design(settings, job), init_weights=parent_model,
        blocked=None if parent_model or job.parent is None else (
            f"its parent job {job.parent} is not done: a leave-out tree's child starts from "
            "its parent's best weights"),
    )
    rank, size = mpi_rank_and_size()
    if rank == 0:  # before the result: a finished job's TensorBoard file is there with it
        record_job(store.job_dir(job.id), job, result)
    if result["status"] not in (JobState.DONE, JobState.PRUNED, JobState.INTERRUPTED):
        print(f"rank {rank}: " + (result.get("traceback") or result["error"]), file=sys.stderr)
        if rank == 0:
            store.write_result(job.id, result)
        if size > 1:
            _abort_job()  # the other ranks may wait in an allreduce forever otherwise
        return 1
    if size > 1:
        _barrier()  # rank 0 reports done only when every rank got there
    if rank == 0:
        store.write_result(job.id, result)
        print(f"job {job.id} {result['status']}: " + ", ".join(
            f"{k}={v:.4g}" for k, v in sorted(result["metrics"].items())))
    return 0


def _parent_model(store: RunStore, job: Job) -> str | None:
    """A leave-out tree child's start: its parent's saved model (its best weights), or
    for a user's training function, which saves what it likes, the parent's job folder;
    None without a parent, or while the parent is not done (the job then fails, saying
    so: never a silent start from scratch)."""
    if job.parent is None:
        return None
    result = store.result(job.parent) or {}
    if result.get("status") != JobState.DONE:
        return None
    model = result.get("model_file")
    folder = store.job_dir(job.parent)
    return str(folder / str(model)) if model else str(folder)


def _mpi() -> Any:
    from mpi4py import MPI

    return MPI


def _abort_job() -> None:
    """MPI_Abort ends this job's ranks only: every job is its own MPI launch."""
    sys.stderr.flush()
    _mpi().COMM_WORLD.Abort(1)


def _barrier() -> None:
    _mpi().COMM_WORLD.Barrier()


if __name__ == "__main__":
    sys.exit(main())
