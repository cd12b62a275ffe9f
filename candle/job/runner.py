"""One training run: resolve params, train the benchmark or user model, report a result."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from candle.benchmark import TrainContext, find_benchmark
from candle.job.interrupt import Interrupted
from candle.job.progress import EpochReporter, Pruned, use_reporter
from candle.job.user_model import extras_from, load_function, metrics_from, predictions_from
from candle.plan.jobs import Job
from candle.state import JobState
from candle.store.atomic import atomic_write_bytes
from candle.uq.predictions import save as save_predictions


def mpi_rank_and_size() -> tuple[int, int]:
    """Rank and size from the launcher's environment (no MPI import needed to know it)."""
    # Order matters: mpirun inside a Slurm allocation also inherits SLURM_PROCID, and
    # Open MPI under `srun --mpi=pmix` sets OMPI_COMM_WORLD_* only once MPI is initialised.
    for rank_var, size_var in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                               ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS"),
                               ("PMI_RANK", "PMI_SIZE"),
                               ("PALS_RANKID", "PALS_SIZE")):
        if rank_var in os.environ:
            return int(os.environ[rank_var]), int(os.environ.get(size_var, "1"))
    return 0, 1


def train_job(
    benchmark: str,
    params: dict[str, Any],
    ctx: TrainContext,
    base_dir: Path,
) -> dict[str, Any]:
    """Run the model; return {"metrics", "history", ...}. Exceptions propagate."""
    definition = find_benchmark(benchmark, base_dir)
    if definition is None:
        fn = load_function(benchmark, base_dir)
        call_params = {**params, "fold": ctx.fold, "folds": ctx.folds,
                       "cv_seed": ctx.cv_seed, "replica": ctx.replica, "seed": ctx.seed,
                       "job_dir": str(ctx.job_dir),
                       "rank": ctx.rank, "size": ctx.size}
        if ctx.design is not None:  # issue 21: the function is trusted to honour it
            call_params["design"] = ctx.design
        if ctx.init_weights is not None:
            call_params["init_weights"] = ctx.init_weights
        returned = fn(call_params)
        metrics, history = metrics_from(returned)
        outcome: dict[str, Any] = {"metrics": metrics, "history": history}
        outcome.update(extras_from(returned))  # best_epoch, stopped_early_at
        predicted = predictions_from(returned)
        if predicted is not None:
            outcome["predictions"] = predicted
        return outcome
    full = {**definition.defaults(), **params}
    result: dict[str, Any] = definition.train_function()(full, ctx)
    return result


def save_outputs(outcome: dict[str, Any], job_dir: Path, rank: int) -> None:
    """Move the arrays a training returned out of its record into files (rank 0 writes):
    test-set predictions to the job's predictions.npz, the CV fold assignment to the run's
    content-addressed ``cv/folds-<digest>.npy`` (every fold of a point shares one file),
    with a readable ``.csv`` beside it where the benchmark names each sample's group."""
    predicted = outcome.pop("predictions", None)
    assignment = outcome.pop("fold_assignment", None)
    groups = outcome.pop("fold_groups", None)
    if rank != 0:
        return
    if predicted is not None:
        outcome["predictions"] = save_predictions(job_dir, predicted).name
    if assignment is not None:
        outcome["fold_assignment"] = save_fold_assignment(job_dir.parent.parent, assignment,
                                                          groups)


def save_fold_assignment(run_root: Path, assignment: Any, groups: Any = None) -> str:
    """``cv/folds-<digest>.npy`` under the run (written once; same content, same name).
    With ``groups`` (a label per sample) also ``cv/folds-<digest>.csv``: sample, group,
    fold (-1: the held-out test set, -2: a test study's sample; a leave-out node: the
    level its path left the sample out at, 0: trained on), and the digest covers both."""
    import numpy as np

    array = np.asarray(assignment, dtype=np.int16)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    digest = hashlib.sha256(buffer.getvalue())
    labels: list[str] = []
    if groups is not None:
        labels = [str(label) for label in groups]
        if len(labels) != len(array):
            raise ValueError(f"fold_groups has {len(labels)} labels for {len(array)} samples")
        digest.update("\n".join(labels).encode())
    stem = f"cv/folds-{digest.hexdigest()[:16]}"
    path = run_root / f"{stem}.npy"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    if labels and not (run_root / f"{stem}.csv").exists():
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(("sample", "group", "fold"))
        writer.writerows(zip(range(len(labels)), labels, array.tolist(), strict=True))
        atomic_write_bytes(run_root / f"{stem}.csv", text.getvalue().encode())
    return f"{stem}.npy"


def execute(
    job: Job,
    benchmark: str,
    job_dir: Path,
    base_dir: Path,
    *,
    metrics: tuple[str, ...],
    cv_seed: int = 0,
    stratify: bool = True,
    attempt: int = 1,
    threads: int = 0,
    report_epochs: bool = False,
    wait_for_verdict: bool = False,
    uq: dict[str, Any] | None = None,
    design: dict[str, Any] | None = None,
    init_weights: str | None = None,
    blocked: str | None = None,
) -> dict[str, Any]:
    """Train ``job`` and return its result record (status done, pruned, interrupted or
    failed), never raising. ``report_epochs``: an adaptive search follows the job epoch by
    epoch (and ``wait_for_verdict``: may prune it). ``design``/``init_weights``: issue 21's
    sample design and a tree child's start (TrainContext); ``blocked``: why the job cannot
    run (it fails with that error)."""
    rank, size = mpi_rank_and_size()
    started = time.time()
    # Outside an adaptive search it only keeps a user model's candle.report epochs.
    reporter = EpochReporter(job_dir, rank=rank, size=size, wait_for_verdict=wait_for_verdict,
                             publish=report_epochs)
    use_reporter(reporter, size)
    ctx = TrainContext(job_dir=job_dir, seed=job.seed, fold=job.fold, folds=job.folds,
                       cv_seed=cv_seed, stratify=stratify, replica=job.replica,
                       rank=rank, size=size, threads=threads,
                       on_epoch=reporter if report_epochs else None, uq=uq,
                       design=design, init_weights=init_weights)
    record: dict[str, Any] = {
        "job_id": job.id, "point": job.point, "fold": job.fold, "replica": job.replica,
        "attempt": attempt, "host": socket.gethostname(), "ranks": size,
        "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
        "started": started,
    }
    if job.repeat:
        record["repeat"] = job.repeat
    if job.node is not None:  # a leave-out tree's node (``node`` is taken: the host's)
        record.update(tree_node=job.node, stage=job.stage, init_from=job.parent,
                      baseline=job.baseline)
    try:
        if blocked is not None:  # e.g. a tree child whose parent is not done
            raise RuntimeError(blocked)
        outcome = train_job(benchmark, job.params, ctx, base_dir)
        save_outputs(outcome, job_dir, rank)
        reported = outcome.get("metrics", {})
        missing = [metric for metric in metrics if metric not in reported]
        if missing:
            record.update(missing_metric=missing[0], metrics=reported)
            raise KeyError(f"the model did not report metric {missing[0]!r}; it reported "
                           f"{', '.join(sorted(reported)) or 'nothing'}")
        record.update(outcome)
        if reporter.history and not record.get("history"):
            record["history"] = reporter.history  # a user model's candle.report calls
        record["status"] = JobState.DONE.value
        record["error"] = None
    except Pruned as pruned:
        record.update(status=JobState.PRUNED.value, error=None, pruned_at_step=pruned.step,
                      metrics=pruned.metrics,
                      history=reporter.history)
    except Interrupted as stop:  # checkpointed at this step; the next attempt resumes
        record.update(status=JobState.INTERRUPTED.value, error=None, interrupted_at_step=stop.step,
                      metrics={}, history=reporter.history)
    except Exception as exc:  # a failing model fails its job, never the sweep
        record["status"] = JobState.FAILED.value
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()[-4000:]
        record.setdefault("metrics", {})
        if reporter.history:
            record.setdefault("history", reporter.history)  # the epochs before it failed
    record["ended"] = time.time()
    record["duration_s"] = round(record["ended"] - started, 3)
    return record
