"""`candle report`: a run's plots as PNG files and one self-contained HTML page.

The page has inline CSS and every image both embedded (a base64 data URI) and linked to
its PNG next to it: it works offline, copied alone or with its folder. A plot is drawn
only when its data exist; the page lists the others and why they are missing. Every file
is written atomically (temp file, fsync, rename), the page last."""

from __future__ import annotations

import base64
import contextlib
import html
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from candle.errors import UserError
from candle.plan.jobs import Job
from candle.reporting import plots
from candle.reporting.cv import FoldTable
from candle.reporting.page_designs import design_sections, plan_designs
from candle.reporting.pbt import PbtSummary, summarise_pbt
from candle.reporting.plot_plan import Plot, PlotPlan, Skipped
from candle.reporting.status import RunStatus, collect_status
from candle.reporting.summary import Summary, read_results, summarise
from candle.spec.model import direction_sign
from candle.state import JobState
from candle.store.atomic import atomic_write_bytes, atomic_write_text
from candle.store.manifest import RunManifest
from candle.store.run_store import RunStore
from candle.uq.summary import UQRow

INDEX = "index.html"
CURVES_CAP = 50  # learning curves drawn (best jobs first)
TOP_ROWS = 10  # rows of the best-points table
FAILED_ROWS = 10  # failed jobs listed

Progress = Callable[[int, int, str], None]  # (plots written, plots in all, current file)


@dataclass
class JobView:
    job: Job
    result: dict[str, Any] | None
    value: float | None  # the sweep metric of a done job (finite), else None


@dataclass
class ReportData:
    root: Path
    manifest: RunManifest
    jobs: list[JobView]
    status: RunStatus
    summary: Summary
    folds: FoldTable | None
    uq: list[UQRow]
    pbt: PbtSummary | None = None  # population-based training: its members and lineage

    @property
    def metric(self) -> str:
        return self.manifest.metric

    @property
    def direction(self) -> str:
        return self.manifest.direction


@dataclass
class Written:
    index: Path
    images: list[Path]
    skipped: list[Skipped]


def collect(store: RunStore) -> ReportData:
    """Everything the page and its plots show, read from the run directory alone."""
    store.require()
    manifest = store.manifest()
    metric = manifest.metric
    views = []
    results = read_results(store)
    for job in store.jobs():
        result = results[job.id]
        value = None
        if result is not None and result.get("status") == JobState.DONE:
            found = (result.get("metrics") or {}).get(metric)
            if isinstance(found, int | float) and math.isfinite(found):
                value = float(found)
        views.append(JobView(job, result, value))
    summary = summarise(store, results)
    return ReportData(root=store.root, manifest=manifest, jobs=views,
                      status=collect_status(store, tail_lines=0), summary=summary,
                      folds=summary.fold_table, uq=summary.uq_rows,
                      pbt=summarise_pbt(store) if manifest.pbt is not None else None)


# -- which plots ------------------------------------------------------------------------
def _series(result: dict[str, Any] | None, key: str) -> list[float]:
    history = (result or {}).get("history")
    if not isinstance(history, dict):
        return []
    values = history.get(key)
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def history_curves(data: ReportData) -> tuple[str | None, list[plots.Curve]]:
    """The metric the histories are drawn for (the sweep metric, else val_loss, else
    loss: the first any job has) and one curve per job that has it, best jobs first."""
    sign = direction_sign(data.direction)
    for key in dict.fromkeys((data.metric, "val_loss", "loss")):
        found = [(view, series) for view in data.jobs if (series := _series(view.result, key))]
        if not found:
            continue
        # Finished jobs by their final metric first, then the rest by their last epoch.
        found.sort(key=lambda vs: (vs[0].value is None,
                                   sign * (vs[0].value if vs[0].value is not None
                                           else _last_finite(vs[1])),
                                   vs[0].job.point, vs[0].job.id))
        return key, [plots.Curve(_job_label(view.job), series) for view, series in found]
    return None, []


def _last_finite(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return finite[-1] if finite else math.inf


def _job_label(job: Job) -> str:
    parts = [f"p{job.point}"]
    if job.fold is not None:
        parts.append(f"f{job.fold}")
    if job.replica:
        parts.append(f"r{job.replica}")
    return f"{job.id[:8]} ({' '.join(parts)})"


def varied_params(data: ReportData) -> list[str]:
    """Parameters whose value differs between points, sorted by name."""
    points: dict[int, dict[str, Any]] = {}
    for view in data.jobs:
        points.setdefault(view.job.point, view.job.point_params)
    names = sorted({name for p in points.values() for name in p})
    return [name for name in names
            if len({plots.label_of(p.get(name)) for p in points.values()}) > 1]


def file_stem(name: str) -> str:
    """A parameter name as a safe file-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "param"


def plan_plots(data: ReportData) -> PlotPlan:
    """The plots this run's data allow, in page order, and the ones it does not."""
    plan = PlotPlan()
    metric, direction = data.metric, data.direction
    if data.pbt is not None:
        _plan_pbt(data, data.pbt, plan)
    else:
        _plan_curves(data, plan)
    varied = varied_params(data)
    finished = [v for v in data.jobs if v.value is not None]
    if not varied:
        plan.skipped.append(Skipped("metric vs parameters",
                                    "no parameter varies between points"))
    elif not finished:
        plan.skipped.append(Skipped("metric vs parameters",
                                    f"no job finished with a value of {metric}"))
    else:
        used: set[str] = set()
        for name in varied:
            stem = file_stem(name)
            while stem in used:
                stem += "_"
            used.add(stem)
            xs = [v.job.point_params.get(name) for v in finished]
            ys = [v.value for v in finished if v.value is not None]
            plan.plots.append(Plot(
                f"metric_vs_{stem}.png", f"{metric} vs {name}",
                f"The final {metric} of each of the {len(ys)} finished jobs against {name}"
                + ("." if plots.is_numeric(xs) else " (a box per value, jobs as dots)."),
                _bind(plots.metric_vs_param, name, xs, ys, metric, direction)))
    rows = [r for r in data.summary.rows if r.mean is not None]
    if len(varied) < 2:
        plan.skipped.append(Skipped("parallel coordinates",
                                    f"needs two or more varied parameters ({len(varied)} vary)"))
    elif not rows:
        plan.skipped.append(Skipped("parallel coordinates",
                                    f"no point has a value of {metric} yet"))
    else:
        plan.plots.append(Plot(
            "parallel_coordinates.png", "parallel coordinates",
            f"One line per point with a result ({len(rows)}), across its {len(varied)} "
            f"varied parameters and its mean {metric}, coloured by it. Each axis runs from "
            "its smallest to its largest value (log-scaled when they span decades); "
            "categorical values are placed by rank.",
            _bind(plots.parallel_coordinates, varied, [r.params for r in rows],
                  [r.mean for r in rows if r.mean is not None], metric, direction)))
    _plan_uq(data, plan)
    _plan_cv(data, plan)
    plan_designs(data.summary, plan, _bind)
    return plan


def _plan_curves(data: ReportData, plan: PlotPlan) -> None:
    key, curves = history_curves(data)
    if key is None:
        plan.skipped.append(Skipped(
            "learning curves", f"no job has a per-epoch history of {data.metric}, "
            "val_loss or loss (a user model returning a dict of metrics reports none)"))
        return
    total = len(curves)
    shown = curves[:CURVES_CAP]
    note = f"showing {len(shown)} of {total}" if total > len(shown) else f"all {total}"
    plan.plots.append(Plot(
        "learning_curves.png", "learning curves",
        f"{key} per epoch, one line per job with a history, best jobs first ({note}); "
        "the legend names the best 10 (job id, point, fold, replica).",
        _bind(plots.learning_curves, shown, key, total)))


def _plan_pbt(data: ReportData, pbt: PbtSummary, plan: PlotPlan) -> None:
    """A population's scores over epochs (instead of one learning curve per segment job,
    each starting at epoch 1) and the best member's schedule."""
    results = {view.job.id: view.result for view in data.jobs}
    scored = [r for r in pbt.rows if r.score is not None]
    if not scored:
        plan.skipped.append(Skipped("population over epochs",
                                    f"no member has reached a ready point with a value of "
                                    f"{data.metric} yet"))
    else:
        exploits = sum(s.copied_from is not None for s in pbt.segments())
        plan.plots.append(Plot(
            "pbt_population.png", "population over epochs",
            f"{data.metric} per epoch of each of the {len(pbt.rows)} members, best first "
            "(from its segments' histories; one point per segment where a segment has "
            f"none). Stars and dashed lines: the {exploits} exploit(s), from the source "
            "member's score at its checkpoint to the member's next score.",
            _bind(plots.pbt_population, pbt, results)))
    best = pbt.best
    if best is None:
        plan.skipped.append(Skipped("best member's schedule", "no member has a score yet"))
    elif not pbt.mutable:
        plan.skipped.append(Skipped("best member's schedule",
                                    "the search has no parameter that changes mid-training"))
    else:
        plan.plots.append(Plot(
            "pbt_schedule.png", "best member's schedule",
            f"Member {best.member}'s value of {', '.join(pbt.mutable)} over its epochs, one "
            "step per segment; dotted lines where it exploited another member.",
            _bind(plots.pbt_schedule, pbt)))


def _plan_uq(data: ReportData, plan: PlotPlan) -> None:
    if not data.uq:
        uq = bool(data.manifest.uq) or data.manifest.replicas > 1
        reason = ("no finished job saved test-set predictions (predictions.npz)" if uq
                  else "the sweep has no uq: section")
        plan.skipped.append(Skipped("UQ calibration and spread", reason))
        return
    drawn = min(len(data.uq), plots.CALIBRATION_CAP)
    plan.plots.append(Plot(
        "uq_calibration.png", "UQ calibration",
        f"One line per point ({drawn} of {len(data.uq)}) and the ideal diagonal. "
        "Regression: the share of targets below each predicted quantile against its level; "
        "classification: a reliability diagram (accuracy against confidence per bin).",
        _bind(plots.uq_calibration, data.uq)))
    with_spread = [r for r in data.uq if r.spreads]
    if not with_spread:
        plan.skipped.append(Skipped("UQ spread", "no point has per-sample uncertainties"))
        return
    plan.plots.append(Plot(
        "uq_spread.png", "UQ spread",
        f"Histogram of the per-sample uncertainty, one per point "
        f"({min(len(with_spread), plots.SPREAD_CAP)} of {len(with_spread)}).",
        _bind(plots.uq_spread, with_spread)))


def _plan_cv(data: ReportData, plan: PlotPlan) -> None:
    if data.folds is None:
        plan.skipped.append(Skipped("cross-validation folds",
                                    "the sweep does not cross-validate (no cv: section)"))
        return
    rows = [r for r in data.folds.rows if r.mean is not None]
    if not rows:
        plan.skipped.append(Skipped("cross-validation folds",
                                    f"no fold has a value of {data.metric} yet"))
        return
    shown = min(len(rows), plots.CV_TOP)
    plan.plots.append(Plot(
        "cv_folds.png", "cross-validation folds",
        f"{data.metric} per fold (dots) and mean ± std over the folds (bars) of the best "
        f"{shown} of {len(rows)} points.",
        _bind(plots.cv_folds, data.folds)))


def _bind(fn: Callable[..., Figure], *args: Any) -> Callable[[], Figure]:
    def make() -> Figure:
        return fn(*args)
    return make


# -- writing ----------------------------------------------------------------------------
def write_report(store: RunStore, out: Path, progress: Progress | None = None) -> Written:
    """Draw the run's plots into ``out`` as PNG files, then write ``out/index.html``."""
    if out.exists() and not out.is_dir():
        raise UserError("--out must be a directory; this is a file", file=out)
    data = collect(store)
    plan = plan_plots(data)
    out.mkdir(parents=True, exist_ok=True)
    images: list[tuple[Plot, bytes]] = []
    for index, plot in enumerate(plan.plots):
        if progress is not None:
            progress(index, len(plan.plots), plot.name)
        png = plots.png_bytes(plot.make())
        atomic_write_bytes(out / plot.name, png)
        _readable(out / plot.name)
        images.append((plot, png))
    if progress is not None:
        progress(len(plan.plots), len(plan.plots), INDEX)
    index_path = out / INDEX
    atomic_write_text(index_path, render_html(data, images, plan.skipped))
    _readable(index_path)
    return Written(index_path, [out / p.name for p, _ in images], plan.skipped)


def _readable(path: Path) -> None:
    """The usual mode for new files (the atomic writer's temp files are private, 0600):
    a report is meant to be shared or served."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def terminal_progress() -> Iterator[Progress | None]:
    """A transient progress bar on stderr when it is a terminal; None otherwise."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
    from rich.progress import Progress as Bar

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with Bar(TextColumn("[bold]report[/]"), BarColumn(), MofNCompleteColumn(),
             TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("collecting", total=None)

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name)

        yield update


# -- the page ---------------------------------------------------------------------------
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { font-weight: bold; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9rem; }
code { background: #f4f4f4; padding: 0 0.2rem; } .note { color: #666; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}"


def _of(shown: int, total: int) -> str:
    return f"the best {shown} of {total}" if total > shown else f"all {total}"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={plots.label_of(v)}" for k, v in sorted(params.items()))


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    """``rows`` hold HTML already escaped; a cell starting with '#' is numeric."""
    parts = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for index, row in enumerate(rows):
        klass = classes[index] if classes else ""
        parts.append(f'<tr class="{klass}">' if klass else "<tr>")
        for cell in row:
            if cell.startswith("#"):
                parts.append(f'<td class="num">{cell[1:]}</td>')
            else:
                parts.append(f"<td>{cell}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def render_html(data: ReportData, images: list[tuple[Plot, bytes]],
                skipped: list[Skipped]) -> str:
    manifest = data.manifest
    name = manifest.name
    body: list[str] = [
        f"<h1>{_e(name)}</h1>",
        f'<p class="meta">benchmark <code>{_e(manifest.benchmark)}</code> · '
        f'{_e(manifest.method)} search · metric <code>{_e(data.metric)}</code> '
        f"({_e(data.direction)}) · run directory <code>{_e(data.root.resolve())}</code> · "
        f"written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
    ]
    body += _jobs_section(data)
    body += _top_section(data) if data.pbt is None else _pbt_section(data.pbt)
    body += _uq_section(data)
    body += _cv_section(data)
    body += design_sections(data.summary, _e, _params, _table)
    body.append("<h2>Plots</h2>")
    if not images:
        body.append('<p class="note">No plot could be drawn from this run yet.</p>')
    for plot, png in images:
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        body.append(
            f'<figure id="{_e(plot.name)}"><h3>{_e(plot.title)}</h3>'
            f'<a href="{_e(plot.name)}"><img src="{uri}" alt="{_e(plot.title)}"></a>'
            f'<figcaption>{_e(plot.caption)} File: <a href="{_e(plot.name)}">'
            f"{_e(plot.name)}</a></figcaption></figure>")
    if skipped:
        body.append("<h2>Not drawn</h2><ul>")
        body += [f"<li><b>{_e(s.title)}</b>: {_e(s.reason)}</li>" for s in skipped]
        body.append("</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(name)}: candle report</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _jobs_section(data: ReportData) -> list[str]:
    status = data.status
    head = ["total", *(s.value for s in JobState)]
    counts = [f"#{status.total}", *(f"#{status.counts.get(s, 0)}" for s in JobState)]
    out = ["<h2>Jobs</h2>", _table(head, [counts])]
    if status.failures:
        rows = [[f"<code>{_e(f.job_id)}</code>", f"#{f.attempt}", _e(f.error)]
                for f in status.failures[:FAILED_ROWS]]
        more = len(status.failures) - len(rows)
        out.append("<h3>Failed jobs</h3>" + _table(["job", "attempt", "error"], rows))
        if more > 0:
            out.append(f'<p class="note">and {more} more (see <code>candle status</code>)</p>')
    return out


def _top_section(data: ReportData) -> list[str]:
    summary = data.summary
    better = "lower" if summary.direction == "minimize" else "higher"
    out = [f"<h2>Best points</h2><p class=\"note\">{_e(summary.metric)}, {better} is better; "
           f"mean ± std over folds and replicas; {_of(TOP_ROWS, len(summary.rows))} points.</p>"]
    rows, classes = [], []
    for row in summary.rows[:TOP_ROWS]:
        value = "-" if row.mean is None else f"{_num(row.mean)} ± {_num(row.std, 2)}"
        rows.append([f"#{row.point}", _e(_params(row.params)), f"#{_e(value)}", f"#{row.n}",
                     f"#{row.failed}", f"#{row.pending}"])
        classes.append("best" if row.best else "")
    out.append(_table(["point", "params", f"{summary.metric} mean ± std", "n", "failed",
                       "pending"], rows, classes))
    return out


def _pbt_section(pbt: PbtSummary) -> list[str]:
    """The population best first and the best member's schedule (as `candle summary`)."""
    better = "lower" if pbt.direction == "minimize" else "higher"
    out = [f"<h2>Population</h2><p class=\"note\">{_e(pbt.metric)}, {better} is better; "
           "depth: exploits in the ancestry of the member's weights.</p>"]
    rows = [[f"#{r.member}", f"#{_num(r.score)}", f"#{r.epochs}/{pbt.epochs}", _e(r.state),
             f"#{r.depth}", _e(_params(r.params))] for r in pbt.rows]
    out.append(_table(["member", pbt.metric, "epochs", "state", "depth", "params"], rows,
                      ["best" if r.best else "" for r in pbt.rows]))
    best = pbt.best
    if best is None:
        return out
    schedule = [[f"#{s.start}-{s.end}", *(f"#{_e(plots.label_of(s.params.get(n)))}"
                                          for n in pbt.mutable),
                 f"#{_num(s.score)}",
                 "" if s.copied_from is None else
                 _e(f"copied from member {s.copied_from} at epoch {s.copied_epoch}")]
                for s in best.segments]
    out.append(f"<h3>Member {best.member}'s schedule (best)</h3>")
    out.append(_table(["epochs", *pbt.mutable, pbt.metric, "exploit"], schedule))
    return out


def _uq_section(data: ReportData) -> list[str]:
    if not data.uq:
        return []
    names = list(dict.fromkeys(k for r in data.uq for k in r.metrics))
    rows = [[f"#{r.point}", _e(_params(r.params)), _e(r.kind), _e(r.method), f"#{r.members}",
             f"#{r.samples}", *(f"#{_num(r.metrics.get(k))}" for k in names)]
            for r in data.uq]
    return ["<h2>Uncertainty (UQ)</h2>",
            _table(["point", "params", "kind", "method", "members", "samples", *names], rows)]


def _cv_section(data: ReportData) -> list[str]:
    table = data.folds
    if table is None:
        return []
    shown = table.rows[:plots.CV_TOP]
    rows = [[f"#{r.point}", _e(_params(r.params)), *(f"#{_num(v)}" for v in r.values),
             f"#{_num(r.mean)} ± {_num(r.std, 2)}" if r.mean is not None else "#-"]
            for r in shown]
    repeats = (f" (each fold: the mean over its {table.repeats} repeats x replicas)"
               if table.repeats > 1 else "")
    note = (f'<p class="note">{_e(table.metric)} per fold{repeats}, best mean first; '
            f"{_of(len(shown), len(table.rows))} points.")
    if table.assignments:
        note += " Fold assignments: " + ", ".join(f"<code>{_e(a)}</code>"
                                                  for a in table.assignments)
    if table.tables:
        note += " Readable (sample, group, fold): " + ", ".join(
            f"<code>{_e(t)}</code>" for t in table.tables)
    return ["<h2>Cross-validation</h2>", note + "</p>",
            _table(["point", "params", *(f"fold {f}" for f in range(table.folds)),
                    "mean ± std"], rows)]
