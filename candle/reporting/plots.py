"""The figures of `candle report`: one function per plot, each returning a matplotlib
Figure (tests look at its axes and lines), and `png_bytes` to render one.

Figures are made without pyplot (no global figure registry, no display): each gets its
own Agg canvas, so this works on a login node without X and in threads."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from candle.reporting.cv import FoldTable
from candle.reporting.pbt import PbtSummary, member_curves
from candle.spec.model import direction_sign
from candle.uq.summary import UQRow

DIAGONAL = "diagonal"  # gid of the ideal-calibration line (not a data line)
EXPLOIT = "exploit"  # gid of a PBT exploit connector or marker line (not a data line)
CALIBRATION_CAP = 20  # rows drawn in the calibration plot
SPREAD_CAP = 8  # histograms in the spread plot
CV_TOP = 20  # points in the CV plot
DPI = 100


@dataclass
class Curve:
    """One job's per-epoch values of one metric."""

    label: str
    values: list[float]


def _figure(width: float = 7.0, height: float = 4.2) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes (Agg)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def label_of(value: Any) -> str:
    """How a parameter value is written on an axis (lists and dicts as compact JSON)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return "-" if value is None else str(value)


def is_numeric(values: Sequence[Any]) -> bool:
    return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                for v in values)


def _log_scale(values: Sequence[float]) -> bool:
    """Positive values spread over two decades or more (learning rates): a log axis."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 100


def _better(direction: str) -> str:
    return "lower is better" if direction == "minimize" else "higher is better"


def learning_curves(curves: Sequence[Curve], metric: str, total: int | None = None) -> Figure:
    """One line per job, in the order of ``curves`` (best first: ``ax.lines[0]`` and the
    legend's first entry); the best one drawn thickest and on top."""
    fig = _figure()
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    n = len(curves)
    for index, curve in enumerate(curves):
        ax.plot(range(1, len(curve.values) + 1), curve.values,
                color=cmap(0.85 * index / max(1, n - 1)), zorder=2 + n - index,
                linewidth=2.2 if index == 0 else 1.0, alpha=1.0 if index < 10 else 0.55,
                label=curve.label if index < 10 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    shown = f"showing {n} of {total} jobs" if total is not None and total > n else f"{n} jobs"
    ax.set_title(f"{metric} per epoch ({shown}, best first)")
    if n:
        _legend(ax, title="job (best 10)" if n > 10 else "job")
    return fig


def metric_vs_param(name: str, xs: Sequence[Any], ys: Sequence[float], metric: str,
                    direction: str) -> Figure:
    """Each finished job's final metric against one parameter: a scatter for numbers, a
    box per category (with the jobs as dots) otherwise."""
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    if is_numeric(xs):
        values = [float(x) for x in xs]
        ax.scatter(values, ys, s=22, alpha=0.8)
        if _log_scale(values):
            ax.set_xscale("log")
    else:
        labels = sorted({label_of(x) for x in xs})
        groups: list[list[float]] = [[] for _ in labels]
        for x, y in zip(xs, ys, strict=True):
            groups[labels.index(label_of(x))].append(y)
        positions = list(range(len(labels)))
        ax.boxplot(groups, positions=positions, widths=0.5, showfliers=False)
        for position, group in zip(positions, groups, strict=True):
            jitter = np.linspace(-0.12, 0.12, len(group)) if len(group) > 1 else np.zeros(1)
            ax.scatter(position + jitter, group, s=18, alpha=0.8, color="C0", zorder=3)
        ax.set_xticks(positions, labels, rotation=30 if len(labels) > 4 else 0)
    ax.set_xlabel(name)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {name} ({_better(direction)})")
    return fig


def _axis_positions(values: Sequence[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """Values mapped onto 0..1 and the labels to write along the axis: numbers scaled
    (log when they span decades), categories by rank of their sorted labels."""
    if is_numeric(values):
        numbers = [float(v) for v in values]
        log = _log_scale(numbers)
        scaled = [math.log10(v) for v in numbers] if log else numbers
        low, high = min(scaled), max(scaled)
        span = high - low
        positions = [(v - low) / span if span > 0 else 0.5 for v in scaled]
        distinct = sorted(set(numbers))
        shown = distinct if len(distinct) <= 8 else [distinct[0], distinct[-1]]
        ticks = [(positions[numbers.index(v)], label_of(v)) for v in shown]
        return positions, ticks
    labels = sorted({label_of(v) for v in values})
    rank = {label: i / (len(labels) - 1) if len(labels) > 1 else 0.5
            for i, label in enumerate(labels)}
    return [rank[label_of(v)] for v in values], [(rank[x], x) for x in labels]


def parallel_coordinates(names: Sequence[str], params: Sequence[Mapping[str, Any]],
                         values: Sequence[float], metric: str, direction: str) -> Figure:
    """One polyline per point across its parameters and the metric, coloured by the metric.
    Each axis is scaled to 0..1; categorical values sit at the rank of their label."""
    fig = _figure(max(6.0, 1.6 * (len(names) + 1) + 1.5), 4.5)
    ax = fig.add_subplot()
    columns = [[p.get(name) for p in params] for name in names] + [list(values)]
    axes = [*names, metric]
    laid = [_axis_positions(column) for column in columns]
    scaled = [positions for positions, _ in laid]
    ticks = [axis_ticks for _, axis_ticks in laid]
    norm = Normalize(vmin=min(values, default=0.0), vmax=max(values, default=1.0))
    cmap = colormaps["viridis_r" if direction == "minimize" else "viridis"]
    sign = direction_sign(direction)
    order = sorted(range(len(values)), key=lambda i: -sign * values[i])  # best drawn last
    xs = list(range(len(axes)))
    for i in order:
        ax.plot(xs, [column[i] for column in scaled], color=cmap(norm(values[i])),
                linewidth=1.4, alpha=0.85)
    ax.vlines(xs, 0.0, 1.0, colors="0.4", linewidth=0.8)
    for x, axis_ticks in zip(xs, ticks, strict=True):
        for y, text in axis_ticks:
            ax.text(x + 0.03, y, text, fontsize=7, va="center", ha="left", color="0.2",
                    clip_on=False)
    ax.set_xticks(xs, axes)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(axes) - 1 + 0.6)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                 label=f"{metric} ({_better(direction)})")
    ax.set_title(f"{len(values)} points: parameters and {metric}")
    return fig


def uq_calibration(rows: Sequence[UQRow], cap: int = CALIBRATION_CAP) -> Figure:
    """One line per row (the first ``cap``) and the ideal diagonal; one panel per kind:
    regression: expected vs observed quantile level, classification: reliability diagram
    (mean confidence vs accuracy per confidence bin)."""
    rows = list(rows)[:cap]
    kinds = sorted({r.kind for r in rows}) or ["regression"]
    fig = _figure(5.2 * len(kinds), 4.6)
    for kind in kinds:
        ax = fig.add_subplot(1, len(kinds), kinds.index(kind) + 1)
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", label="ideal", gid=DIAGONAL)
        for row in (r for r in rows if r.kind == kind):
            expected = [e for e, _ in row.calibration]
            observed = [o for _, o in row.calibration]
            ax.plot(expected, observed, marker="o", markersize=3, linewidth=1.2,
                    label=f"point {row.point} ({row.method})")
        if kind == "classification":
            ax.set_xlabel("confidence (mean per bin)")
            ax.set_ylabel("accuracy")
            ax.set_title("reliability diagram")
        else:
            ax.set_xlabel("expected quantile level")
            ax.set_ylabel("observed share of targets below it")
            ax.set_title("regression calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        _legend(ax)
    return fig


def uq_spread(rows: Sequence[UQRow], cap: int = SPREAD_CAP) -> Figure:
    """One histogram (step outline, shared bins) of the per-sample uncertainty per row
    that has any, the first ``cap`` of them."""
    chosen = [r for r in rows if r.spreads][:cap]
    fig = _figure()
    ax = fig.add_subplot()
    pooled = np.concatenate([np.asarray(r.spreads, dtype=np.float64) for r in chosen]) \
        if chosen else np.zeros(1)
    finite = pooled[np.isfinite(pooled)]
    bins = [float(edge) for edge in
            np.histogram_bin_edges(finite if finite.size else np.zeros(1), bins=30)]
    for row in chosen:
        data = np.asarray(row.spreads, dtype=np.float64)
        ax.hist(data[np.isfinite(data)], bins=bins, histtype="step", linewidth=1.4,
                label=f"point {row.point} ({row.kind})")
    ax.set_xlabel("per-sample uncertainty\n(regression: predictive std; "
                  "classification: std of the top-class probability)", fontsize=9)
    ax.set_ylabel("test samples")
    ax.set_title("spread of the ensembles' uncertainty")
    if chosen:
        _legend(ax)
    return fig


def cv_folds(table: FoldTable, top: int = CV_TOP) -> Figure:
    """Per point (best ``top``): each fold's value as a dot, mean ± std as an error bar."""
    rows = [r for r in table.rows if r.mean is not None][:top]
    fig = _figure(max(6.0, 0.45 * len(rows) + 2.5), 4.2)
    ax = fig.add_subplot()
    offsets = np.linspace(-0.32, -0.08, table.folds) if table.folds > 1 else [-0.15]
    for fold in range(table.folds):
        offset = float(offsets[fold])  # the folds left of the bar, in fold order
        xs = [i + offset for i, r in enumerate(rows) if r.values[fold] is not None]
        ys = [v for r in rows if (v := r.values[fold]) is not None]
        ax.scatter(xs, ys, s=16, alpha=0.8, label=f"fold {fold}", zorder=2)
    ax.errorbar([i + 0.1 for i in range(len(rows))], [r.mean or 0.0 for r in rows],
                yerr=[r.std or 0.0 for r in rows], fmt="_", color="k", markersize=14,
                capsize=4, label="mean ± std", zorder=3)
    ax.set_xticks(range(len(rows)), [str(r.point) for r in rows])
    ax.set_xlabel("point (best mean first)")
    ax.set_ylabel(table.metric)
    ax.set_title(f"{table.metric} per fold ({table.folds} folds; {_better(table.direction)})")
    _legend(ax)
    return fig


def _legend(ax: Axes, title: str | None = None) -> None:
    ax.legend(fontsize=7, title=title, title_fontsize=7, loc="best", framealpha=0.8)


def pbt_population(summary: PbtSummary,
                   results: Mapping[str, Mapping[str, Any] | None]) -> Figure:
    """One line per member (best first: ``ax.lines[0]``) of its metric over absolute
    epochs; an exploit ends the member's line and restarts it from the source's
    checkpoint: a marker on the source's score there, a dashed connector (gid EXPLOIT) to
    the member's first score afterwards."""
    curves = member_curves(summary, results)
    fig = _figure()
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    n = len(curves)
    colours = {c.member: cmap(0.85 * i / max(1, n - 1)) for i, c in enumerate(curves)}
    for index, curve in enumerate(curves):
        colour = colours[curve.member]
        for piece, (xs, ys) in enumerate(curve.pieces):
            ax.plot(xs, ys, color=colour, marker="o", markersize=2.5,
                    linewidth=2.2 if index == 0 else 1.2, zorder=3 + n - index,
                    label=f"member {curve.member}" if piece == 0 else None)
    exploits = [(e, e.source_score) for c in curves for e in c.exploits
                if e.source_score is not None]
    for event, score in exploits:
        colour = colours[event.member]
        source = (event.source_epoch, score)
        if event.after is not None:
            ax.plot([source[0], event.after[0]], [source[1], event.after[1]], color=colour,
                    linestyle="--", linewidth=1.0, gid=EXPLOIT)
        ax.scatter([source[0]], [source[1]], marker="*", s=90, color=colour,
                   edgecolors="k", linewidths=0.5, zorder=n + 5)
    ax.set_xlabel("epoch")
    ax.set_ylabel(summary.metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"population {summary.metric} ({_better(summary.direction)}); "
                 f"★ - - exploit ({len(exploits)})")
    if n:
        _legend(ax, title="member (best first)")
    return fig


def pbt_schedule(summary: PbtSummary) -> Figure:
    """The best member's value of each mutable parameter over its epochs, one panel per
    parameter (a step per segment; log axis for a log-searched one or a learning rate);
    dotted verticals where it exploited another member."""
    best = summary.best
    segments = best.segments if best is not None else []
    names = list(summary.mutable)
    fig = _figure(7.0, 1.2 + 2.0 * max(1, len(names)))
    axes = fig.subplots(max(1, len(names)), 1, sharex=True, squeeze=False)[:, 0]
    edges = [s.start for s in segments] + ([segments[-1].end] if segments else [])
    for ax, name in zip(axes, names, strict=False):
        values: list[Any] = [s.params.get(name) for s in segments]
        numeric = is_numeric(values)
        ys = [float(v) for v in values] if numeric else [label_of(v) for v in values]
        if segments:
            ax.step(edges, [*ys, ys[-1]], where="post", color="C0", linewidth=1.8)
        for segment in segments:
            if segment.copied_from is not None:
                ax.axvline(segment.start, color="0.5", linestyle=":", linewidth=1.0,
                           gid=EXPLOIT)
        numbers = [float(v) for v in values] if numeric else []
        logged = name in summary.log or name in ("lr", "learning_rate") or _log_scale(numbers)
        if numbers and logged and min(numbers) > 0:
            ax.set_yscale("log")
        ax.set_ylabel(name)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    member = f"member {best.member}" if best is not None else "no member"
    axes[0].set_title(f"{member}'s schedule (best; dotted: exploited another member)")
    return fig
