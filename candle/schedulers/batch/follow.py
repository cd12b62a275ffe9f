"""`candle run` with a batch scheduler: submit, say what was submitted and how to follow
it, and with --wait follow it (one batched status call per poll, backing off) to the end."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from enum import Enum

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from candle.schedulers._base import AllocState
from candle.schedulers._command import SchedulerError
from candle.schedulers.batch.backend import Provider, backend_for
from candle.schedulers.batch.submit import Submission, backend_of, plan_and_submit, submissions
from candle.spec.model import Sweep
from candle.state import JobState
from candle.store.run_store import RunStore
from candle.supervisor.run import run_meta

POLL_FIRST_S = 2.0
POLL_MAX_S = 30.0
MAX_UNSEEN_POLLS = 10


class Stage(Enum):
    """Where `candle run` is with a batch scheduler; each stage's step says what comes next
    (another stage, or the exit code)."""

    SUBMIT = "submit"  # plan and submit a wave (or find the one still queued), say so
    FOLLOW = "follow"  # --wait: poll the wave to its end; array mode then submits the next


@dataclass
class _Waves:
    """One `candle run` on a batch scheduler. Array mode goes in waves (Optuna: a batch of
    trials; a plan: as many tasks as the queue limit allows), and with --wait the next wave
    goes when one has ended; an adaptive search is told each wave's results first."""

    sweep: Sweep
    dry_run: bool
    wait: bool
    fail_fast: bool
    console: Console = field(default_factory=lambda: Console(stderr=False))
    code: int = 0  # the last follow's
    still: bool = False  # found an earlier wave still queued: nothing was submitted

    @property
    def adaptive(self) -> bool:
        return self.sweep.search.adaptive

    def step(self, stage: Stage) -> Stage | int:
        return self.submit_wave() if stage is Stage.SUBMIT else self.follow_wave()

    def submit_wave(self) -> Stage | int:
        """SUBMIT: a wave (or find the one still queued); then FOLLOW with --wait, or exit."""
        sweep, console = self.sweep, self.console
        try:
            meta = replace(run_meta(sweep), fail_fast=self.fail_fast)
            scripts, new, still = plan_and_submit(sweep, meta, dry_run=self.dry_run,
                                                  on_notice=lambda m: console.print(f"note: {m}"))
        except SchedulerError as exc:
            # One plain line on stderr: the command, its exit code and its stderr (no rich
            # markup: ids like 16[] would be eaten, and no wrapping).
            print(f"candle: submission failed: {exc}", file=sys.stderr, flush=True)
            return 1
        if self.dry_run:
            for script in scripts:  # plain stdout: a console would wrap long lines
                sys.stdout.write(f"# ---- {script.name} ({len(script.chunk_ids) or 'all'} "
                                 f"jobs) ----\n{script.text}")
            return 0
        self.still = bool(still)
        if still:
            ids = " ".join(r.job_id for r in still)
            console.print(f"{sweep.name}: already submitted and not finished: {ids}; nothing "
                          f"submitted again (candle status {sweep.run_dir}; candle cancel "
                          f"{sweep.run_dir})")
        elif not new:
            return self._nothing_left()
        else:
            self._say_submitted(new)
        return Stage.FOLLOW if self.wait else 0

    def _nothing_left(self) -> int:
        sweep, run_dir = self.sweep, self.sweep.run_dir
        if self.adaptive:
            told = _finished(RunStore(run_dir), sweep.search.budget)
            unit = "members finished" if sweep.search.pbt is not None else "trials told"
            self.console.print(f"{sweep.name}: {told}/{sweep.search.budget} {unit} -> "
                               f"{run_dir}")
            return 0 if told >= sweep.search.budget else 1
        self.console.print(f"{sweep.name}: every job is already done -> {run_dir}")
        return self.code

    def _say_submitted(self, new: list[Submission]) -> None:
        run_dir, console = self.sweep.run_dir, self.console
        for record in new:
            what = f"array of {record.count}" if record.kind == "array" else "pack allocation"
            path = run_dir / backend_for(self.sweep.resources.scheduler).NAME / record.script
            console.print(f"submitted {record.job_id}: {what} ({path})")
        if not self.wait:
            console.print(f"follow with: candle status {run_dir}   (or candle run ... --wait)")
        waiting = _not_done(RunStore(run_dir)) - sum(r.count for r in new)
        if self.sweep.resources.mode == "array" and not self.adaptive and waiting > 0:
            console.print(f"{waiting} more job(s) go in later waves (the queue's limit); "
                          "--wait submits them as waves end, or run this again")

    def follow_wave(self) -> Stage | int:
        """FOLLOW: to the wave's end; SUBMIT again while array waves still make progress."""
        store = RunStore(self.sweep.run_dir)
        trials = self.sweep.search.budget if self.adaptive else None
        before = _finished(store, trials)
        self.code = follow(store, self.sweep.name, self.console, trials=trials)
        if self.sweep.resources.mode != "array" or self.still:
            return self.code
        if not self.adaptive and _finished(store, trials) == before:
            return self.code  # a wave that finished nothing: another would not either
        return Stage.SUBMIT


def run_on_cluster(sweep: Sweep, *, dry_run: bool, wait: bool, fail_fast: bool = False) -> int:
    """Submit; with --wait follow to the end, wave after wave (see `_Waves`)."""
    waves = _Waves(sweep, dry_run, wait, fail_fast)
    stage: Stage | int = Stage.SUBMIT
    while isinstance(stage, Stage):
        stage = waves.step(stage)
    return stage


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
    unit = ("done" if trials is None else "members finished" if store.manifest().pbt
            else "trials told")
    console.print(f"{name}: {done} {unit}, {total - done} not -> {store.root}")
    return 0 if done >= total else 1


def _not_done(store: RunStore) -> int:
    return sum(1 for status in store.statuses().values() if status != JobState.DONE)


def _finished(store: RunStore, trials: int | None) -> int:
    """Jobs done (trials told): a poll opens only the results new since the last one."""
    if trials is None:
        return sum(1 for status in store.statuses().values() if status == JobState.DONE)
    from candle.schedulers.batch.submit import adaptive_finished

    return adaptive_finished(store)


def _ended(backend: Provider, states: dict[str, AllocState], job_id: str) -> bool:
    """All of a batch job's entries (itself, or its array tasks) are known and terminal."""
    mine = backend.entries_of(states, job_id).values()
    return bool(mine) and all(s.terminal for s in mine)
