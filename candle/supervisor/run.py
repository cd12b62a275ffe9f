"""`candle run`: write the run directory from the sweep, then supervise its jobs."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from typing import Any

from candle import __version__
from candle.adaptive.config import OptunaConfig
from candle.adaptive.pbt import PbtConfig
from candle.errors import UserError
from candle.launch import Launcher, LocalLauncher
from candle.plan.changes import settings_changes
from candle.plan.jobs import JobTemplate, iter_jobs
from candle.spec.model import Resources, Sweep, walltime_seconds
from candle.state import JobState
from candle.store.lease import prune_expired
from candle.store.manifest import RunManifest
from candle.store.run_store import RESULT, RunStore
from candle.store.tensorboard import record_experiment
from candle.supervisor.loop import (
    STOP_GRACE_SECONDS,
    Event,
    JobSource,
    Notice,
    Outcome,
    PlanSource,
    Supervisor,
)
from candle.supervisor.slots import Node, SlotPool


def run_meta(sweep: Sweep) -> RunManifest:
    """The run's manifest as this sweep plans it (run.json, candle.store.manifest)."""
    search, resources = sweep.search, sweep.resources
    return RunManifest(
        name=sweep.name, benchmark=sweep.benchmark, metric=search.metric,
        direction=search.direction, metrics=tuple(m for m, _ in search.objectives),
        directions=tuple(d for _, d in search.objectives), method=search.method,
        folds=sweep.cv.folds if sweep.cv else None,
        cv_seed=sweep.cv.seed if sweep.cv else 0,
        stratify=sweep.cv.stratify if sweep.cv else True,
        replicas=sweep.uq.replicas if sweep.uq else 1,
        uq=sweep.uq.to_record() if sweep.uq else None,
        base_dir=sweep.base_dir, source=sweep.source, candle_version=__version__,
        updated=time.time(), retries=sweep.retries, job_timeout=sweep.job_timeout,
        template=JobTemplate.of(sweep).to_record(),
        optuna=OptunaConfig.of(sweep.name, search) if search.method == "optuna" else None,
        pbt=PbtConfig.of(sweep).to_record() if search.method == "pbt" else None,
        resources=replace(resources, site=None),
        site_file=resources.site.source if resources.site else None)


def check_settings(store: RunStore, sweep: Sweep) -> list[str]:
    """Before a run directory is (re)planned: what identity settings the sweep changed.

    A static plan gets new job ids for them, so the notices only say what happened to the
    earlier results. An adaptive study's finished trials were computed under the old
    settings and its sampler learned from them: it is refused, naming the setting."""
    if not store.exists():
        return []
    old = store.manifest()
    changes = settings_changes(old.template, JobTemplate.of(sweep))
    if not changes:
        return []
    if sweep.search.method == "optuna" and old.optuna:
        from candle.adaptive.study import told_trials

        told = told_trials(store.root, old.optuna.study_name)
        if told:
            first = changes[0]
            raise UserError(
                f"{first} since this study began: its {told} trial(s) were computed under "
                f"the old setting; give the sweep a new name to start a new study",
                file=sweep.source, line=_line_of(sweep, first.key), key=first.key)
        return []
    kept = sum(1 for job in store.jobs() if (store.job_dir(job.id) / RESULT).exists())
    what = "; ".join(str(change) for change in changes)
    return [f"{what}: jobs under the new settings are new jobs; {kept} result(s) of the "
            "earlier settings stay in jobs/ but do not count"]


def _line_of(sweep: Sweep, key: str) -> int | None:
    """The line of a dotted sweep key ("cv.seed"); None for a key that is not one."""
    from candle.spec.yaml_lines import key_line

    path = tuple(key.split(" ")[0].split("."))
    if len(path) < 2:
        return None
    with contextlib.suppress(UserError):  # the file changed since it validated
        return key_line(sweep.source, path)
    return None


def planned_pool(resources: Resources) -> SlotPool:
    """The allocation the sweep asks for: ``nodes`` nodes (a local run: this machine, one
    node) of ``slots_per_node`` slots. When not given: this machine's cores for a local
    run; on a cluster (the site does not know its node size) one job's ranks, which is
    what the batch script then asks each node for."""
    default = (os.cpu_count() or 1) if resources.scheduler == "local" else resources.ranks_per_job
    slots = resources.slots_per_node or default
    return SlotPool([Node(f"node{i}" if resources.nodes > 1 else "localhost", slots,
                          resources.gpus_per_node) for i in range(1, resources.nodes + 1)],
                    oversubscribe=resources.oversubscribe)


def concurrent_jobs(resources: Resources, pool: SlotPool) -> int:
    """How many jobs run at once when the allocation is full."""
    capacity = sum(n.capacity for n in pool.nodes) // resources.ranks_per_job
    if resources.max_concurrent:
        return max(1, min(resources.max_concurrent, capacity) if capacity
                   else resources.max_concurrent)
    return max(1, capacity)


def threads_per_job(concurrent: int, ranks: int) -> int:
    """Threads per rank: share this node's cores between concurrent jobs' ranks (TF would
    otherwise start a thread pool per rank as wide as the machine)."""
    return max(1, (os.cpu_count() or 1) // max(1, concurrent * ranks))


# Every job's environment: quiet TensorFlow, unbuffered output (logs stay in order).
JOB_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def mpi_env() -> dict[str, str]:
    """Open MPI refuses root unless told twice; containers and test machines run as root."""
    if os.geteuid() == 0:
        return {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    return {}


def build_supervisor(store: RunStore, manifest: RunManifest, launcher: Launcher,
                     pool: SlotPool, *, threads: int, deadline: float | None,
                     began: float | None = None, stop_grace: float = STOP_GRACE_SECONDS,
                     array_task: bool = False, on_event: Event | None = None,
                     on_notice: Notice | None = None) -> Supervisor:
    """The one supervisor of a run, locally and inside an allocation: the run's settings
    come from its manifest, what the allocation offers (launcher, slots, threads, its end,
    the scheduler's kill grace) from the caller. An array task runs its one job once: a
    failure is resubmitted by the next `candle run`."""
    resources = manifest.resources
    return Supervisor(
        store, launcher, pool=pool,
        max_concurrent=0 if array_task else resources.max_concurrent,
        ranks_per_job=resources.ranks_per_job, retries=0 if array_task else manifest.retries,
        threads_per_job=threads, on_event=on_event, env={**JOB_ENV, **mpi_env()},
        deadline=deadline, began=began, signal_lead=resources.signal_lead,
        fail_fast=manifest.fail_fast, on_notice=on_notice, stop_grace=stop_grace,
        job_timeout=manifest.job_timeout,
        workers="process" if array_task else resources.workers)


def planned_total(sweep: Sweep, planned: int) -> int:
    """What a run's progress counts to: jobs, trials (optuna) or segments (pbt)."""
    pbt = sweep.search.pbt
    if pbt is not None:
        from candle.adaptive.pbt import segments_per_member

        return pbt.population * segments_per_member(pbt.epochs, pbt.ready)
    return sweep.search.trials if sweep.search.method == "optuna" else planned


def job_source(store: RunStore, on_trial: Any = None,
               on_notice: Notice | None = None) -> JobSource:
    """The run's jobs: its fixed plan, or (adaptive search) its Optuna study, which the
    caller — holding the run's lock — is then the only writer of."""
    manifest = store.manifest()
    if manifest.pbt is not None and manifest.template is not None:
        from candle.adaptive.pbt import PbtSource

        return PbtSource(store, PbtConfig.from_record(manifest.pbt),
                         JobTemplate.from_record(manifest.template))
    config = manifest.optuna
    if config is None or manifest.template is None:
        jobs = list(store.jobs())
        if any(job.parent is not None for job in jobs):  # a leave-out tree: parents first
            from candle.supervisor.tree import TreeSource, blocked_notice

            states = store.states()
            say = on_notice or (lambda message: None)
            return TreeSource(jobs, lambda job_id: states.get(job_id) is JobState.DONE,
                              lambda parent, blocked: say(blocked_notice(parent, blocked)))
        return PlanSource(jobs)
    from candle.adaptive.source import OptunaSource
    from candle.adaptive.study import open_study

    return OptunaSource(store, open_study(store.root, config), config,
                        JobTemplate.from_record(manifest.template), on_trial=on_trial)


def run_sweep(sweep: Sweep, on_event: Event | None = None,
              on_planned: Any = None, on_trial: Any = None,
              on_notice: Notice | None = None, fail_fast: bool = False) -> Outcome:
    """Plan, (re)write the run directory and run every job not already done. A local
    run given a ``walltime`` keeps to it like an allocation would: it drains before the
    end and the same command continues."""
    resources = sweep.resources
    pool = planned_pool(resources)
    if not pool.fits_ever(resources.ranks_per_job):
        raise UserError(f"{resources.ranks_per_job} ranks per job do not fit this machine's "
                        f"{pool.total_slots} slots; lower ranks_per_job or set "
                        "slots_per_node / oversubscribe", file=sweep.source,
                        key="resources.ranks_per_job")
    store = RunStore(sweep.run_dir)
    with store.supervisor_lock():
        prune_expired(store.root)  # leases of supervisors that died hard
        for notice in check_settings(store, sweep):
            (on_notice or (lambda message: None))(notice)
        adaptive = sweep.search.adaptive
        manifest = replace(run_meta(sweep), fail_fast=fail_fast)
        total = store.initialise(sweep.text, manifest, None if adaptive else iter_jobs(sweep))
        record_experiment(store.root, sweep)  # tb/: the HParams experiment config
        from candle.supervisor.seed import apply_seed

        apply_seed(store, sweep, on_notice)  # search.seed_from: before any job runs
        source = job_source(store, on_trial, on_notice)
        if on_planned is not None:
            on_planned(planned_total(sweep, total))
        concurrent = concurrent_jobs(resources, pool)
        supervisor = build_supervisor(
            store, manifest, LocalLauncher(oversubscribe=resources.oversubscribe), pool,
            threads=threads_per_job(concurrent, resources.ranks_per_job),
            deadline=(time.time() + walltime_seconds(resources.walltime)
                      if resources.walltime_given else None),
            on_event=on_event, on_notice=on_notice)
        outcome = supervisor.run(source)
    if outcome.fatal:
        raise missing_metric_error(sweep, outcome)
    return outcome


def missing_metric_error(sweep: Sweep, outcome: Outcome) -> UserError:
    """A job's result lacks the sweep's metric: every job would fail alike (and an Optuna
    budget burn), so the sweep stops with one line at search.metric."""
    from candle.spec.parse import did_you_mean

    store = RunStore(sweep.run_dir)
    result = next((r for r in map(store.result, outcome.failed_ids)
                   if r and r.get("missing_metric")), {})
    metric = str(result.get("missing_metric", sweep.search.metric))
    reported = sorted(result.get("metrics") or {})
    key = "search.metric"
    return UserError(
        f"{sweep.benchmark} did not report {metric!r}{did_you_mean(metric, reported)} "
        f"(job {result.get('job_id', '?')} reported: {', '.join(reported) or 'nothing'}); "
        "the sweep stopped: fix the metric (or the model) and run again",
        file=sweep.source, line=_line_of(sweep, key), key=key)
