"""`candle report`'s sections and plots for issue 21's designs: the leave-out tree per
stage, the held-out test set, cross-study. Nothing is added for an ordinary run (not even a
"not drawn" line: those would only be noise on every other report)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from candle.reporting import plots_designs
from candle.reporting.cells import Cell
from candle.reporting.plot_plan import Plot, PlotPlan, Skipped
from candle.reporting.render_designs import (
    caveat,
    has_held_stages,
    held_metric,
    row_cell,
    within_label,
)
from candle.reporting.summary import PointRow, Summary

TOP = 20  # points in each design table


def plan_designs(summary: Summary, plan: PlotPlan,
                 bind: Callable[..., Callable[[], Any]]) -> None:
    """The per-stage and cross-study plots where the run has those designs."""
    metric, direction = summary.metric, summary.direction
    if summary.stages:
        drawn = [r for r in summary.rows if r.stages
                 and any(s.transfer.mean is not None for s in r.stages)]
        if not drawn:
            plan.skipped.append(Skipped("leave-out tree per stage",
                                        f"no node has a value of {metric} yet"))
        else:
            shown = min(len(drawn), plots_designs.STAGE_POINTS)
            held = has_held_stages(drawn)
            text = (f"{metric} on each stage's left-out parts, mean ± std over the stage's "
                    f"nodes x replicas, of the best {shown} of {len(drawn)} points: "
                    "transfer (from the parent's weights, solid) and, where the run trains "
                    "them, the same nodes from scratch (baseline, dashed).")
            if held:
                text += (f" Right: {held_metric(summary)} on the held-out test set, never "
                         "trained on by any node, the same way. A child's validation part "
                         "was in its parent's training rows, so the left panel flatters "
                         "transfer; the right one is the fair comparison.")
            plan.plots.append(Plot(
                "leaveout_stages.png", "leave-out tree per stage", text,
                bind(plots_designs.leaveout_stages, drawn, metric, direction,
                     plots_designs.STAGE_POINTS, held_metric(summary) if held else None)))
    if summary.study_metrics:
        drawn = [r for r in summary.rows if r.held_out is not None and r.held_out.studies]
        shown = min(len(drawn), plots_designs.STUDY_POINTS)
        plan.plots.append(Plot(
            "cross_study.png", "cross-study vs within-study",
            f"Per point (the best {shown} of {len(drawn)}): {within_label(summary)} and, "
            f"for each target study ({', '.join(summary.study_metrics)}), the test "
            "metric there; bars are means over the point's jobs, whiskers their std.",
            bind(plots_designs.cross_study, drawn, metric, direction,
                 summary.study_metrics, within_label(summary))))


def design_sections(summary: Summary, e: Callable[[Any], str],
                    params: Callable[[dict[str, Any]], str],
                    table: Callable[[list[str], list[list[str]]], str]) -> list[str]:
    """HTML for each design the run has (``e``, ``params``, ``table``: the page's own
    escaping, parameter text and table helpers)."""
    out: list[str] = []
    better = "lower" if summary.direction == "minimize" else "higher"
    rows = summary.rows[:TOP]
    if summary.stages:
        baseline = any(s.baseline is not None for r in rows for s in r.stages or [])
        held = has_held_stages(rows)
        note = (f"{e(summary.metric)} on the parts each stage leaves out, {better} is "
                "better; mean ± std over the stage's nodes x replicas (done/planned).")
        if baseline:
            note += (" Transfer: from the parent's weights; baseline: the same nodes from "
                     "scratch (a point's mean in the summary pools transfer nodes only). "
                     + e(caveat(held)))
        out += ["<h2>Leave-out tree</h2>", f'<p class="note">{note}</p>',
                table(*_stage_table(rows, e, params, baseline, held=False))]
        if held:
            out += [f'<p class="note">{e(held_metric(summary))} on the held-out test set, '
                    "never trained on by any node: the same columns.</p>",
                    table(*_stage_table(rows, e, params, baseline, held=True))]
    if summary.holdout_metric is not None:
        body = [[f"#{r.point}", e(params(r.params)), _cell(row_cell(r), e),
                 _cell(r.held_out.holdout, e) if r.held_out and r.held_out.holdout else "#-"]
                for r in rows]
        out += ["<h2>Held-out test set</h2>",
                f'<p class="note">{e(summary.holdout_metric)}: a test set never trained on '
                f"(outside every fold), shown apart from the validation metric "
                f"{e(summary.metric)} the search ranks by.</p>",
                table(["point", "params", f"{summary.metric} (validation)",
                       f"{summary.holdout_metric} (test)"], body)]
    if summary.study_metrics:
        studies = list(summary.study_metrics)
        body = []
        for r in rows:
            found = r.held_out.studies if r.held_out is not None else {}
            body.append([f"#{r.point}", e(params(r.params)), _cell(row_cell(r), e),
                         *(_cell(found[s], e) if s in found else "#-" for s in studies)])
        out += ["<h2>Cross-study</h2>",
                f'<p class="note">{e(within_label(summary))} against each target study, '
                f"{better} is better; mean ± std (done/planned).</p>",
                table(["point", "params", within_label(summary),
                       *(f"{s}: {summary.study_metrics[s]}" for s in studies)], body)]
    return out


def _stage_table(rows: Sequence[PointRow], e: Callable[[Any], str],
                 params: Callable[[dict[str, Any]], str], baseline: bool,
                 held: bool) -> tuple[list[str], list[list[str]]]:
    """Head and body of the per-stage table: the sweep metric's, or with ``held`` the
    held-out test set's."""
    head = ["point", "params", "stage", "transfer"]
    if baseline:
        head += ["baseline", "transfer - baseline", "better"]
    body = []
    for row in rows:
        for found in row.stages or []:
            stage = found.held_out if held else found
            cells = [f"#{row.point}", e(params(row.params)), f"#{found.stage}"]
            if stage is None:
                body.append(cells + ["#-"] * (len(head) - len(cells)))
                continue
            cells.append(_cell(stage.transfer, e))
            if baseline:
                cells += ["#-" if stage.baseline is None else _cell(stage.baseline, e),
                          "#-" if stage.diff is None else f"#{stage.diff:+.4g}",
                          e(stage.better or "-")]
            body.append(cells)
    return head, body


def _cell(found: Cell, e: Callable[[Any], str]) -> str:
    return "#" + e(found.text())
