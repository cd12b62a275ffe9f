"""`candle run` with a batch scheduler: submit, say what was submitted and how to follow
it, and with --wait follow it (one batched status call per poll, backing off) to the end."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from candle.schedulers._base import AllocState
from candle.schedulers._command import SchedulerError
from candle.schedulers.batch.backend import Backend, backend_for
from candle.schedulers.batch.submit import backend_of, plan_and_submit, submissions
from candle.spec.model import Sweep
from candle.state import JobState
from candle.store.run_store import RunStore
from candle.supervisor.run import run_meta

POLL_FIRST_S = 2.0
POLL_MAX_S = 30.0
MAX_UNSEEN_POLLS = 10


def run_on_cluster(sweep: Sweep, *, dry_run: bool, wait: bool, fail_fast: bool = False) -> int:
    """Submit; with --wait follow to the end. An Optuna search in array mode goes on batch
    by batch: each time its arrays end, the results are told and the next batch asked."""
    console = Console(stderr=False)
    adaptive = sweep.search.method == "optuna"
    # Array mode goes in waves (Optuna: a batch of trials; a plan: as many tasks as the
    # queue limit allows); --wait submits the next wave when one has ended.
    batches = sweep.resources.mode == "array"
    code = 0
    while True:
        try:
            meta = {**run_meta(sweep), "fail_fast": fail_fast}
            scripts, new, still = plan_and_submit(sweep, meta, dry_run=dry_run,
                                                  on_notice=lambda m: console.print(f"note: {m}"))
        except SchedulerError as exc:
            # One plain line on stderr: the command, its exit code and its stderr (no rich
            # markup: ids like 16[] would be eaten, and no wrapping).
            print(f"candle: submission failed: {exc}", file=sys.stderr, flush=True)
            return 1
        if dry_run:
            for script in scripts:  # plain stdout: a console would wrap long lines
                sys.stdout.write(f"# ---- {script.name} ({len(script.chunk_ids) or 'all'} "
                                 f"jobs) ----\n{script.text}")
            return 0
        run_dir = sweep.run_dir
        if still:
            ids = " ".join(r.job_id for r in still)
            console.print(f"{sweep.name}: already submitted and not finished: {ids}; nothing "
                          f"submitted again (candle status {run_dir}; candle cancel {run_dir})")
        elif not new:
            if adaptive:
                told = _finished(RunStore(run_dir), sweep.search.trials)
                console.print(f"{sweep.name}: {told}/{sweep.search.trials} trials told -> "
                              f"{run_dir}")
                return 0 if told >= sweep.search.trials else 1
            console.print(f"{sweep.name}: every job is already done -> {run_dir}")
            return code
        else:
            for record in new:
                what = (f"array of {record.count}" if record.kind == "array"
                        else "pack allocation")
                path = run_dir / backend_for(sweep.resources.scheduler).NAME / record.script
                console.print(f"submitted {record.job_id}: {what} ({path})")
            if not wait:
                console.print(f"follow with: candle status {run_dir}   (or candle run ... "
                              "--wait)")
            waiting = _not_done(RunStore(run_dir)) - sum(r.count for r in new)
            if batches and not adaptive and waiting > 0:
                console.print(f"{waiting} more job(s) go in later waves (the queue's limit); "
                              "--wait submits them as waves end, or run this again")
        if not wait:
            return 0
        store = RunStore(run_dir)
        trials = sweep.search.trials if adaptive else None
        before = _finished(store, trials)
        code = follow(store, sweep.name, console, trials=trials)
        if not batches or still:
            return code
        if not adaptive and _finished(store, trials) == before:
            return code  # a wave that finished nothing: another would not either


def follow(store: RunStore, name: str, console: Console, trials: int | None = None) -> int:
    """Poll until every submission has ended; a progress bar counts finished jobs (or, for
    an adaptive search, the trials its study has told)."""
    total = trials if trials is not None else sum(1 for _ in store.jobs())
    backend = backend_of(store)
    delay = POLL_FIRST_S
    unseen: dict[str, int] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(name, total=total, info="")
        while True:
            # Read every poll: an allocation that ran out of walltime adds its continuation.
            ids = [r.job_id for r in submissions(store) if r.job_id]
            states = backend.status(ids)
            done = _finished(store, trials)
            counts: dict[AllocState, int] = {}
            for state in states.values():
                counts[state] = counts.get(state, 0) + 1
            info = ", ".join(f"{s.value.lower()} {n}" for s, n in sorted(counts.items()))
            progress.update(task, completed=done, info=info)
            for job_id in ids:  # gone from the queue and its history: stop waiting for it
                seen = backend.entries_of(states, job_id)
                unseen[job_id] = 0 if seen else unseen.get(job_id, 0) + 1
            if all(_ended(backend, states, job_id) or unseen[job_id] > MAX_UNSEEN_POLLS
                   for job_id in ids):
                break
            time.sleep(delay)
            delay = min(POLL_MAX_S, delay * 1.5)
    done = _finished(store, trials)
    unit = "trials told" if trials is not None else "done"
    console.print(f"{name}: {done} {unit}, {total - done} not -> {store.root}")
    return 0 if done >= total else 1


def _not_done(store: RunStore) -> int:
    return sum(1 for job in store.jobs() if store.state(job.id) is not JobState.DONE)


def _finished(store: RunStore, trials: int | None) -> int:
    if trials is None:
        return sum(1 for job in store.jobs() if store.state(job.id) is JobState.DONE)
    from candle.adaptive.study import told_trials

    return told_trials(store.root, str(store.meta()["name"]))


def _ended(backend: Backend, states: dict[str, AllocState], job_id: str) -> bool:
    """All of a batch job's entries (itself, or its array tasks) are known and terminal."""
    mine = backend.entries_of(states, job_id).values()
    return bool(mine) and all(s.terminal for s in mine)
