"""Terminal rendering for the CLI (rich). The data comes from status/summary modules."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from candle.benchmark import Benchmark
from candle.plan.jobs import Job
from candle.reporting.pbt import PbtSummary
from candle.reporting.status import RunStatus, lost_lines
from candle.reporting.study_summary import StudySummary
from candle.reporting.summary import Summary
from candle.state import JobState


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 160  # piped or logged: do not squeeze ids and params into 80 columns
    return console


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def print_plan(info: dict[str, Any], jobs: list[Job]) -> None:
    console = _console()
    console.print(f"[bold]{info['name']}[/]: {info['benchmark']}, {info['method']} search")
    if info.get("segments"):
        console.print(f"members {info['points']} x segments {info['segments']} = at most "
                      f"[bold]{info['jobs']} jobs[/], each member's next segment decided as its "
                      f"last ends -> {info['run_dir']}")
    elif info.get("adaptive"):
        console.print(f"trials {info['points']} x folds {info['folds']} x replicas "
                      f"{info['replicas']} = at most [bold]{info['jobs']} jobs[/], each trial "
                      f"asked when a slot frees -> {info['run_dir']}")
    elif info.get("tree"):
        tree = info["tree"]
        twins = ", each below stage 1 also from scratch" if tree["baseline"] else ""
        console.print(f"points {info['points']} x leave-out tree of depth {tree['depth']}, "
                      f"{tree['children']} children ({tree['nodes']} nodes{twins}) x replicas "
                      f"{info['replicas']} = [bold]{info['jobs']} jobs[/], each node once its "
                      f"parent is done -> {info['run_dir']}")
    else:
        repeats = f" ({info['repeats']} repeats)" if info.get("repeats", 1) > 1 else ""
        console.print(f"points {info['points']} x folds {info['folds']}{repeats} x replicas "
                      f"{info['replicas']} = [bold]{info['jobs']} jobs[/] -> {info['run_dir']}")
    alloc = info.get("allocation")
    if alloc:
        gpus = f", {alloc['gpus_per_node']} GPUs" if alloc["gpus_per_node"] else ""
        if alloc.get("mode") == "array":
            at_once = (f"up to {alloc['jobs_at_once']} at once (array_throttle)"
                       if alloc["jobs_at_once"] else "as many at once as the queue starts")
            console.print(f"each job {alloc['ranks_per_job']} rank(s) ({alloc['launcher']}) "
                          f"in an array task of its own, {at_once}")
        else:
            console.print(f"each job {alloc['ranks_per_job']} rank(s) ({alloc['launcher']}); "
                          f"allocation {alloc['nodes']} node(s) x {alloc['slots_per_node']} "
                          f"slots{gpus} -> up to {alloc['jobs_at_once']} job(s) at once")
        if alloc.get("site"):
            console.print(f"site: {alloc['site']}", markup=False)
        if alloc.get("note"):
            console.print(f"note: {alloc['note']}", markup=False)
    if not jobs:
        return
    names = sorted({k for j in jobs for k in j.point_params})
    table = Table(title=f"first {len(jobs)} jobs")
    in_tree = any(job.node is not None for job in jobs)
    repeated = any(job.repeat for job in jobs)
    where: tuple[str, ...] = (("node", "from") if in_tree else ("fold", "repeat") if repeated
                              else ("fold",))
    for column in ("job", "point", *where, "replica", "seed", *names):
        table.add_column(column)
    for job in jobs:
        placed = ((job.node or "", job.parent or ("scratch" if job.baseline else "-"))
                  if in_tree else (_fmt(job.fold), str(job.repeat)) if repeated
                  else (_fmt(job.fold),))
        table.add_row(job.id, str(job.point), *placed, str(job.replica), str(job.seed),
                      *(_fmt(job.point_params.get(n, "")) for n in names))
    console.print(table)


class RunProgress:
    """A progress bar on stderr fed by supervisor events: jobs, or (adaptive search) trials
    — a trial may be several jobs (folds, replicas), or end early when pruned."""

    def __init__(self, name: str, unit: str = "jobs") -> None:
        self.console = _console(stderr=True)
        self.unit = unit
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )
        self.task = self.progress.add_task(name, total=None, detail="planning")
        self.counts = {"done": 0, "failed": 0, "running": 0, "retry": 0, "pruned": 0,
                       "interrupted": 0, "timeout": 0}
        self.started = False

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def planned(self, total: int) -> None:
        """Start drawing only once the run is ours (locked) and planned."""
        self.progress.update(self.task, total=total, detail="")
        self.progress.start()
        self.started = True

    def event(self, kind: str, job: Job, result: dict[str, Any] | None) -> None:
        if kind == "started":
            self.counts["running"] += 1
        elif kind in ("done", "failed", "retry", "pruned", "interrupted", "timeout"):
            self.counts["running"] -= 1
            self.counts[kind] += 1
            if kind in ("failed", "retry", "timeout"):
                error = (result or {}).get("error", "")
                self.console.print(f"[red]job {job.id} {kind}[/]: {error}")
        if self.unit == "jobs" and kind in ("done", "failed", "skipped", "pruned", "timeout"):
            self.progress.advance(self.task)
        self._detail()

    def notice(self, message: str) -> None:
        """The supervisor's own news (draining at the walltime, a job left for later)."""
        self.console.print(f"[yellow]{message}[/]")

    def trial(self, number: int, state: str, values: Any) -> None:
        """An adaptive search asked or ended a trial."""
        if state == "asked":
            return
        self.progress.advance(self.task)
        self._detail()

    def _detail(self) -> None:
        c = self.counts
        pruned = f", pruned {c['pruned']}" if c["pruned"] else ""
        pruned += f", interrupted {c['interrupted']}" if c["interrupted"] else ""
        pruned += f", timed out {c['timeout']}" if c["timeout"] else ""
        self.progress.update(self.task, detail=f"running {c['running']}, done {c['done']}"
                                                f"{pruned}, failed {c['failed']}, "
                                                f"retries {c['retry']}")


def print_status(status: RunStatus) -> None:
    console = _console()
    parts = [f"{s.value} {status.counts.get(s, 0)}" for s in JobState]
    console.print(f"[bold]{status.name}[/]: {status.total} jobs: " + ", ".join(parts))
    for row in status.batch:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(row["states"].items()))
        what = f"array of {row['count']}" if row["kind"] == "array" else "pack allocation"
        console.print(f"batch job {row['job_id']} ({what}): {states or 'not known yet'}")
    for job_id, note in sorted(status.notes.items()):
        console.print(f"[yellow]not done[/] {job_id}: {note}")
    for line in lost_lines(status):
        console.print(line, markup=False)
    for failure in status.failures:
        console.print(f"\n[red]{failure.state}[/] {failure.job_id} (attempt {failure.attempt}): "
                      f"{failure.error}")
        for line in failure.log_tail:
            console.print(f"  | {line}", markup=False)


SUMMARY_ROWS = 50  # a screenful; rich draws ~2 ms a row, and 10^4 rows help nobody


def print_summary(summary: Summary, limit: int | None = SUMMARY_ROWS) -> None:
    """The points best first; the first ``limit`` of them (None: all) in the tables."""
    console = _console()
    names = sorted({k for r in summary.rows for k in r.params})
    arrow = "lower" if summary.direction == "minimize" else "higher"
    table = Table(title=f"{summary.metric} ({arrow} is better)")
    for column in ("", "point", *names, f"{summary.metric} mean ± std", "n", "failed"):
        table.add_column(column)
    more = len(summary.rows) - limit if limit is not None else 0
    if more > 0:
        summary = replace(summary, rows=summary.rows[:limit])
    for row in summary.rows:
        value = "-" if row.mean is None else f"{row.mean:.4g} ± {row.std:.2g}"
        table.add_row("*" if row.best else "", str(row.point),
                      *(_fmt(row.params.get(n, "")) for n in names),
                      value, str(row.n), str(row.failed))
    console.print(table)
    if summary.uq_method is not None:
        _print_uq(console, summary, names)
    if summary.fold_assignments is not None:
        _print_folds(console, summary, names)
    if summary.stages or summary.holdout_metric is not None or summary.study_metrics:
        from candle.reporting.render_designs import print_designs

        print_designs(console, summary, names, _fmt)
    if more > 0:
        shown = len(summary.rows)
        console.print(f"the best {shown} of {shown + more} points; all of them: --top "
                      f"{shown + more}, or --format csv / json", markup=False)


UQ_COLUMNS = {
    "regression": ("ensemble_mse", "ensemble_r2", "spread", "predictive_std", "coverage_68",
                   "coverage_95", "calibration_error"),
    "classification": ("ensemble_accuracy", "mean_entropy", "ece", "spread"),
}


def _print_uq(console: Console, summary: Summary, names: list[str]) -> None:
    rows = [(r.point, r.params, r.uq) for r in summary.rows if r.uq is not None]
    print_uq_rows(console, str(summary.uq_method), sorted(rows, key=lambda r: r[0]), names)


def print_uq_rows(console: Console, method: str,
                  rows: list[tuple[int, dict[str, Any], dict[str, Any]]],
                  names: list[str]) -> None:
    """One row per point (an Optuna trial is a point): its members' combined numbers."""
    if not rows:
        console.print(f"UQ ({method}): no predictions saved yet")
        return
    columns = UQ_COLUMNS[str(rows[0][2]["kind"])]
    table = Table(title=f"UQ ({method}): each point's members combined")
    for column in ("point", *names, "members", "samples", *columns):
        table.add_column(column)
    for point, params, uq in rows:
        metrics = uq["metrics"]
        table.add_row(str(point), *(_fmt(params.get(n, "")) for n in names),
                      str(uq["members"]), str(uq["samples"]),
                      *("-" if metrics.get(c) is None else f"{metrics[c]:.4g}"
                        for c in columns))
    console.print(table)


def _print_folds(console: Console, summary: Summary, names: list[str]) -> None:
    rows = [r for r in summary.rows if r.folds is not None]
    if not rows:
        return
    folds = len(rows[0].folds or [])
    repeats = summary.fold_table.repeats if summary.fold_table is not None else 1
    table = Table(title=f"CV: {summary.metric} per fold"
                        + (f" ({repeats} repeats)" if repeats > 1 else ""))
    for column in ("point", *names, *(f"fold {i}" for i in range(folds)), "mean ± std"):
        table.add_column(column)
    for row in rows:
        value = "-" if row.mean is None else f"{row.mean:.4g} ± {row.std:.2g}"
        table.add_row(str(row.point), *(_fmt(row.params.get(n, "")) for n in names),
                      *(_fmt(v) for v in row.folds or []), value)
    console.print(table)
    if repeats > 1:
        console.print(f"repeated CV: each fold is the mean over its {repeats} repeats (each "
                      "a different draw of the folds) x replicas", markup=False)
    files = ", ".join(summary.fold_assignments or []) or "none saved yet"
    console.print(f"fold assignment (fold of each training sample, .npy): {files}")
    tables = summary.fold_table.tables if summary.fold_table is not None else []
    if tables:
        console.print(f"readable (sample, group, fold; -1 holdout, -2 a test study): "
                      f"{', '.join(tables)}", markup=False)


def print_study_uq(method: str, rows: list[Any]) -> None:
    """An Optuna search with `uq:`: its trials' ensembles (rows: candle.uq UQRow)."""
    names = sorted({k for r in rows for k in r.params})
    print_uq_rows(_console(), method, [(r.point, r.params, r.to_dict()) for r in rows], names)


def print_study_summary(summary: StudySummary) -> None:
    console = _console()
    names = sorted({k for r in summary.rows for k in r.params})
    objectives = ", ".join(f"{m} ({'lower' if d == 'minimize' else 'higher'} is better)"
                           for m, d in zip(summary.metrics, summary.directions, strict=True))
    mark = "Pareto front" if len(summary.metrics) > 1 else "best"
    table = Table(title=f"{summary.name}: {summary.used}/{summary.trials} trials used; "
                        f"{objectives}; * = {mark}")
    for column in ("", "trial", "state", *names, *summary.metrics, "epochs", "note"):
        table.add_column(column)
    for row in summary.rows:
        values: list[float | None] = (list(row.values) if row.values
                                      else [None] * len(summary.metrics))
        table.add_row("*" if row.best else "", str(row.number), row.state,
                      *(_fmt(row.params.get(n, "")) for n in names),
                      *(_fmt(v) for v in values), _fmt(row.last_step), row.note)
    console.print(table)
    for metric, importances in summary.importances.items():
        ranked = ", ".join(f"{k} {v:.2f}" for k, v in
                           sorted(importances.items(), key=lambda kv: -kv[1]))
        console.print(f"importance for {metric} (fANOVA): {ranked}")


def study_csv(summary: StudySummary) -> str:
    names = sorted({k for r in summary.rows for k in r.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["best", "trial", "state", *names, *summary.metrics, "epochs"])
    for row in summary.rows:
        values: list[float | None] = (list(row.values) if row.values
                                      else [None] * len(summary.metrics))
        writer.writerow([int(row.best), row.number, row.state,
                         *(_fmt(row.params.get(n, "")) for n in names),
                         *("" if v is None else repr(v) for v in values),
                         "" if row.last_step is None else row.last_step])
    return buffer.getvalue()


def print_pbt_summary(summary: PbtSummary) -> None:
    """The population best first, then the best member's schedule, one row a segment."""
    console = _console()
    names = sorted({k for r in summary.rows for k in r.params})
    arrow = "lower" if summary.direction == "minimize" else "higher"
    table = Table(title=f"population of {len(summary.rows)}: {summary.metric} ({arrow} is "
                        "better)", caption="depth: exploits in the ancestry of its weights")
    for column in ("", "member", summary.metric, "epochs", "state", "depth", *names):
        table.add_column(column)
    for row in summary.rows:
        table.add_row("*" if row.best else "", str(row.member), _fmt(row.score),
                      f"{row.epochs}/{summary.epochs}", row.state, str(row.depth),
                      *(_fmt(row.params.get(n, "")) for n in names))
    console.print(table)
    for member, error in sorted(summary.error.items()):
        console.print(f"member {member} failed: {error}", markup=False)
    best = summary.best
    if best is None:
        console.print("no member has a score yet")
        return
    schedule = Table(title=f"best: member {best.member}'s schedule")
    for column in ("epochs", *summary.mutable, summary.metric, "exploit"):
        schedule.add_column(column)
    for segment in best.segments:
        copied = ("" if segment.copied_from is None else
                  f"copied from member {segment.copied_from} at epoch {segment.copied_epoch}")
        schedule.add_row(f"{segment.start}-{segment.end}",
                         *(_fmt(segment.params.get(n)) for n in summary.mutable),
                         _fmt(segment.score), copied)
    console.print(schedule)


def pbt_csv(summary: PbtSummary) -> str:
    """The population rows (the schedule: --format json)."""
    names = sorted({k for r in summary.rows for k in r.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["best", "member", "metric", "score", "epochs", "state", "depth", *names])
    for row in summary.rows:
        writer.writerow([int(row.best), row.member, summary.metric,
                         "" if row.score is None else repr(row.score), row.epochs, row.state,
                         row.depth, *(_fmt(row.params.get(n, "")) for n in names)])
    return buffer.getvalue()


def summary_csv(summary: Summary) -> str:
    names = sorted({k for r in summary.rows for k in r.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    uq_columns = UQ_COLUMNS.get(summary.uq_kind or "", ())
    folds = max((len(r.folds) for r in summary.rows if r.folds is not None), default=0)
    writer.writerow(["best", "point", *names, "metric", "mean", "std", "n", "failed",
                     *(f"uq_{c}" for c in uq_columns), *(f"fold_{i}" for i in range(folds))])
    for row in summary.rows:
        metrics = (row.uq or {}).get("metrics", {})
        writer.writerow([int(row.best), row.point, *(_fmt(row.params.get(n, "")) for n in names),
                         summary.metric, "" if row.mean is None else repr(row.mean),
                         "" if row.std is None else repr(row.std), row.n, row.failed,
                         *("" if metrics.get(c) is None else repr(metrics[c])
                           for c in uq_columns),
                         *("" if v is None else repr(v) for v in (row.folds or [None] * folds))])
    return buffer.getvalue()


def print_benchmark_params(definition: Benchmark) -> None:
    console = _console()
    console.print(f"\n[bold]{definition.name}[/]: {definition.description}")
    table = Table(title="parameters (--set NAME=VALUE)")
    for column in ("name", "type", "default", "help"):
        table.add_column(column)
    for param in sorted(definition.params, key=lambda p: p.name):
        help_text = param.help + (f" ({'|'.join(param.choices)})" if param.choices else "")
        table.add_row(param.name, param.type, _fmt(param.default), help_text)
    console.print(table)
    console.print(f"metrics it reports (search.metric): {', '.join(definition.metrics)}")
