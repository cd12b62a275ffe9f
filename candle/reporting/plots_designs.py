"""The report's figures for issue 21's designs: a leave-out tree's metric per stage
(transfer against the from-scratch baseline; on the validation parts and, where the run
holds a test set out, on that) and cross-study error (within-study against
each target study). Drawn from the summary's rows, best points first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from candle.reporting.cells import base_metric
from candle.reporting.plots import _better, _figure, _legend
from candle.reporting.summary import PointRow

STAGE_POINTS = 6  # points drawn in the per-stage plot (best first)
STUDY_POINTS = 8  # points drawn in the cross-study plot
TRANSFER, BASELINE = "transfer", "baseline"  # gids of the per-stage lines


def leaveout_stages(rows: Sequence[PointRow], metric: str, direction: str,
                    top: int = STAGE_POINTS, held_metric: str | None = None) -> Figure:
    """Per point (the first ``top`` with stages): the metric per stage, mean ± std over
    the stage's nodes x replicas; transfer solid (gid TRANSFER), baseline dashed in the
    same colour (gid BASELINE), a little apart so the error bars do not hide each other.
    With ``held_metric`` and stages that carry it, a second panel (``fig.axes[1]``, the
    same gids) draws the held-out test set's metric the same way: the fair comparison,
    since a child's validation part was in its parent's training rows."""
    chosen = [r for r in rows if r.stages][:top]
    held = held_metric is not None and any(
        s.held_out is not None for r in chosen for s in r.stages or [])
    fig = _figure(11.5 if held else 6.5, 4.2)
    ax = fig.add_subplot(1, 2, 1) if held else fig.add_subplot()
    _stage_lines(ax, chosen, held=False)
    ax.set_ylabel(f"{metric} on the left-out part")
    ax.set_title(f"{metric} per stage: transfer vs from scratch ({_better(direction)})")
    if held:
        ax = fig.add_subplot(1, 2, 2)
        _stage_lines(ax, chosen, held=True)
        ax.set_ylabel(f"{held_metric} on the held-out test set")
        ax.set_title(f"{held_metric} (never trained on) per stage ({_better(direction)})")
    return fig


def _stage_lines(ax: Axes, chosen: Sequence[PointRow], held: bool) -> None:
    """One panel: each point's transfer and baseline lines, of the sweep metric or (with
    ``held``) of the held-out test set's."""
    for index, row in enumerate(chosen):
        colour = f"C{index % 10}"
        stages = [s for s in (
            (f.held_out for f in row.stages or []) if held else row.stages or [])
            if s is not None]
        done = [s for s in stages if s.transfer.mean is not None]
        line = ax.errorbar([s.stage - 0.04 for s in done], [s.transfer.mean or 0.0 for s in done],
                           yerr=[s.transfer.std or 0.0 for s in done], color=colour,
                           marker="o", capsize=3, label=f"point {row.point} transfer")
        line.lines[0].set_gid(TRANSFER)
        based = [s for s in stages if s.baseline is not None and s.baseline.mean is not None]
        if based:
            line = ax.errorbar(
                [s.stage + 0.04 for s in based],
                [s.baseline.mean or 0.0 for s in based if s.baseline is not None],
                yerr=[s.baseline.std or 0.0 for s in based if s.baseline is not None],
                color=colour, marker="s", linestyle="--", capsize=3, mfc="white",
                label=f"point {row.point} baseline")
            line.lines[0].set_gid(BASELINE)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("stage (parts left out along the path)")
    if chosen:
        _legend(ax)


def cross_study(rows: Sequence[PointRow], metric: str, direction: str,
                studies: dict[str, str], within: str, top: int = STUDY_POINTS) -> Figure:
    """Grouped bars per point (the first ``top``): the within-study metric, then each
    target study's; mean ± std over the point's jobs as error bars. ``ax.patches`` holds
    the bars point by point, within first."""
    chosen = [r for r in rows if r.held_out is not None and r.held_out.studies][:top]
    series = [within, *studies]
    width = 0.8 / len(series)
    fig = _figure(max(6.0, 0.9 * len(chosen) * len(series) / 2 + 3), 4.2)
    ax = fig.add_subplot()
    xs = np.arange(len(chosen), dtype=float)
    for index, name in enumerate(series):
        means, errs = [], []
        for row in chosen:
            found = (row.mean, row.std) if index == 0 else _study(row, name)
            means.append(np.nan if found[0] is None else found[0])
            errs.append(found[1] or 0.0)
        label = within if index == 0 else f"{name} ({studies[name]})"
        ax.bar(xs - 0.4 + width * (index + 0.5), means, width, yerr=errs, capsize=3,
               label=label, color=f"C{index % 10}")
    ax.set_xticks(xs, [str(r.point) for r in chosen])
    ax.set_xlabel("point (best first)")
    ax.set_ylabel(f"{metric}; test_<STUDY>_{base_metric(metric)}")
    ax.set_title(f"within-study vs each target study ({_better(direction)})")
    if chosen:
        _legend(ax)
    return fig


def _study(row: PointRow, study: str) -> tuple[float | None, float | None]:
    found = row.held_out.studies.get(study) if row.held_out is not None else None
    return (None, None) if found is None else (found.mean, found.std)
