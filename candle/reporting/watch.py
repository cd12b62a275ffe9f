"""`candle status --watch`: the run's state, refreshed until no job is pending or running.

On a terminal the view redraws in place (rich Live). Otherwise (piped, logged, tests) one
line is printed per refresh in which the counts changed, then the final view once."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from candle.reporting.status import RunStatus, collect_status, lost_lines
from candle.state import JobState
from candle.store.atomic import read_json
from candle.store.run_store import REPORT, RUNNING, RunStore, pid_alive

FAILED_ROWS = 10
RUNNING_ROWS = 20
BATCH_EVERY_S = 30.0  # a scheduler query (squeue/sacct, qstat) at most this often

BatchQuery = Callable[[RunStore], tuple[list[dict[str, Any]], dict[str, str]]]


@dataclass
class RunningJob:
    job_id: str
    point: int
    params: dict[str, Any]
    host: str
    pid: int | None
    attempt: int | None
    since_s: float | None  # seconds since its running marker was written
    epoch: int | None  # its latest epoch report (adaptive searches)


@dataclass
class Snapshot:
    root: Path
    status: RunStatus
    running: list[RunningJob] = field(default_factory=list)
    adaptive: bool = False
    supervisor_alive: bool = False
    taken: float = field(default_factory=time.time)
    batch_asked: float = 0.0

    @property
    def finished(self) -> int:
        c = self.status.counts
        return sum(c.get(s, 0) for s in JobState if s.terminal)

    @property
    def active(self) -> bool:
        """Jobs pending or running; an adaptive search also while its local supervisor
        lives (it asks for new trials as slots free, so the plan is not complete yet)."""
        c = self.status.counts
        if c.get(JobState.PENDING, 0) or c.get(JobState.RUNNING, 0):
            return True
        return self.adaptive and self.supervisor_alive

    def counts_line(self) -> str:
        c = self.status.counts
        parts = ", ".join(f"{s.value} {c.get(s, 0)}" for s in JobState)
        return f"{self.status.name}: {parts} ({self.finished}/{self.status.total} finished)"


def supervisor_alive(store: RunStore) -> bool:
    """Whether the supervisor that last locked this run is a live process on this host
    (read from the lock file, without taking the lock: that could refuse a `candle run`)."""
    try:
        words = (store.root / ".supervisor.lock").read_text(encoding="utf-8").split()
    except OSError:
        return False
    if len(words) < 4 or words[0] != "pid" or words[3] != socket.gethostname():
        return False
    return pid_alive(words[1])


def _running_job(store: RunStore, job: Any, now: float) -> RunningJob:
    directory = store.job_dir(job.id)
    marker: dict[str, Any] = {}
    since = None
    try:
        marker = read_json(directory / RUNNING)
        since = max(0.0, now - (directory / RUNNING).stat().st_mtime)
    except (OSError, ValueError):
        pass
    report = store.read_report(job.id) if (directory / REPORT).exists() else None
    pid = marker.get("pid")
    attempt = marker.get("attempt")
    return RunningJob(job.id, job.point, job.point_params, str(marker.get("host", "?")),
                      int(pid) if isinstance(pid, int) else None,
                      int(attempt) if isinstance(attempt, int) else None, since,
                      int(report["step"]) if report and isinstance(report.get("step"), int)
                      else None)


def take_snapshot(store: RunStore, batch: BatchQuery | None = None,
                  previous: Snapshot | None = None) -> Snapshot:
    """The run now. ``batch`` (the scheduler's view) is asked at most every
    BATCH_EVERY_S; in between the previous answer is shown."""
    status = collect_status(store, tail_lines=0)
    now = time.time()
    adaptive = store.manifest().optuna is not None
    running = [_running_job(store, job, now) for job in status.running[:RUNNING_ROWS]]
    snap = Snapshot(store.root, status, running, adaptive,
                    adaptive and supervisor_alive(store), now)
    if batch is not None:
        if previous is None or now - previous.batch_asked >= BATCH_EVERY_S:
            status.batch, status.notes = batch(store)
            snap.batch_asked = now
        else:
            status.batch, status.notes = previous.status.batch, previous.status.notes
            snap.batch_asked = previous.batch_asked
    return snap


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def view(snap: Snapshot, final: bool = False) -> RenderableType:
    """Counts per state, progress, failed jobs, running jobs and the scheduler's lines."""
    status = snap.status
    total = status.total
    done = status.counts.get(JobState.DONE, 0)
    when = time.strftime("%H:%M:%S", time.localtime(snap.taken))
    state = "finished" if final else f"updated {when}"
    parts: list[RenderableType] = [Text.from_markup(
        f"[bold]{status.name}[/]: {done}/{total} done"
        f" ({100.0 * done / total if total else 0.0:.0f}%), {state}")]
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=max(total, 1), completed=snap.finished, width=50),
                Text(f"{snap.finished}/{total} finished"))
    parts.append(bar)
    counts = Table(show_edge=True)
    for s in JobState:
        counts.add_column(s.value, justify="right")
    counts.add_column("total", justify="right")
    counts.add_row(*(str(status.counts.get(s, 0)) for s in JobState), str(total))
    parts.append(counts)
    if snap.running:
        running = Table(title=f"running ({status.counts.get(JobState.RUNNING, 0)})",
                        title_justify="left")
        for column in ("job", "point", "params", "host", "pid", "attempt", "for", "epoch"):
            running.add_column(column)
        for r in snap.running:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.params.items()))
            running.add_row(r.job_id, str(r.point), params, r.host, _fmt(r.pid or "-"),
                            _fmt(r.attempt or "-"),
                            "-" if r.since_s is None else f"{r.since_s:.0f} s",
                            "-" if r.epoch is None else str(r.epoch))
        parts.append(running)
    if status.failures:
        failed = Table(title=f"failed ({len(status.failures)})", title_justify="left")
        for column in ("job", "attempt", "error"):
            failed.add_column(column)
        for f in status.failures[:FAILED_ROWS]:
            failed.add_row(f.job_id, str(f.attempt), Text(f.error))
        parts.append(failed)
        if len(status.failures) > FAILED_ROWS:
            parts.append(Text(f"... and {len(status.failures) - FAILED_ROWS} more"))
    for row in status.batch:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(row["states"].items()))
        what = f"array of {row['count']}" if row["kind"] == "array" else "pack allocation"
        parts.append(Text(f"batch job {row['job_id']} ({what}): {states or 'not known yet'}"))
    for job_id, note in sorted(status.notes.items()):
        parts.append(Text(f"not done {job_id}: {note}"))
    parts.extend(Text(line) for line in lost_lines(status))
    if final and status.failures:
        parts.append(Text(f"the failed jobs' log tails: candle status {snap.root}"))
    return Group(*parts)


def watch_console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 160  # piped or logged: do not squeeze ids and params into 80 columns
    return console


def watch(store: RunStore, interval: float, console: Console,
          batch: BatchQuery | None = None) -> Snapshot:
    """Refresh every ``interval`` seconds until no job is pending or running; returns the
    last snapshot. Ctrl-C (KeyboardInterrupt) propagates to the caller."""
    snap = take_snapshot(store, batch)
    if not snap.active:
        console.print(view(snap, final=True))
        return snap
    if console.is_terminal:  # the last view stays on screen, also after Ctrl-C
        with Live(view(snap), console=console, auto_refresh=False) as live:
            while snap.active:
                time.sleep(interval)
                snap = take_snapshot(store, batch, snap)
                live.update(view(snap, final=not snap.active), refresh=True)
        return snap
    last = ""
    while True:
        line = snap.counts_line()
        if line != last:
            console.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False,
                          highlight=False)
            console.file.flush()
            last = line
        if not snap.active:
            break
        time.sleep(interval)
        snap = take_snapshot(store, batch, snap)
    console.print(view(snap, final=True))
    return snap
