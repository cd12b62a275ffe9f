"""`candle summary`'s tables for issue 21's designs (rich): the leave-out tree's metric per
stage against its from-scratch baseline (on the validation parts and, where the run holds
a test set out, on that: the fair comparison), the held-out test set apart from the CV
metric, and the within-study metric against each target study. Kept apart from render.py
so an ordinary summary's code stays as it was."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from candle.reporting.cells import Cell
from candle.reporting.leaveout import holdout_metric
from candle.reporting.summary import PointRow, Summary

Fmt = Callable[[Any], str]


def print_designs(console: Console, summary: Summary, names: list[str], fmt: Fmt) -> None:
    """Each design table the summary has, for its rows as given (best first, capped)."""
    arrow = "lower" if summary.direction == "minimize" else "higher"
    if summary.stages:
        print_stages(console, summary, names, fmt, arrow)
    if summary.holdout_metric is not None:
        print_holdout(console, summary, names, fmt)
    if summary.study_metrics:
        print_studies(console, summary, names, fmt, arrow)


def within_label(summary: Summary) -> str:
    trained = ", ".join(summary.train_studies) or "the training studies"
    return f"within {trained}: {summary.metric}"


def row_cell(row: PointRow) -> Cell:
    """A point's sweep metric as a cell (done of all its jobs)."""
    return Cell(row.mean, row.std, row.n, row.n + row.failed + row.pending)


def held_metric(summary: Summary) -> str:
    """The held-out test set's metric name (test_<m>)."""
    return summary.holdout_metric or holdout_metric(summary.metric)


def has_held_stages(rows: Sequence[PointRow]) -> bool:
    """Whether a tree's stages carry the held-out test set's numbers."""
    return any(s.held_out is not None for r in rows for s in r.stages or [])


def caveat(held: bool) -> str:
    """Why the per-stage validation numbers flatter transfer (a run with baselines)."""
    fair = ("so the held-out table below is the fair comparison" if held else
            "so only a held-out test set (cv.holdout) would compare them fairly")
    return ("A child's validation part was in its parent's training rows (transfer has "
            f"seen it, the baseline has not), {fair}.")


def print_stages(console: Console, summary: Summary, names: list[str], fmt: Fmt,
                 arrow: str) -> None:
    rows = [r for r in summary.rows if r.stages]
    baseline = any(s.baseline is not None for r in rows for s in r.stages or [])
    held = has_held_stages(rows)
    how = "mean ± std over the stage's nodes x replicas (done/planned)"
    if baseline:
        how += ("; transfer: from the parent's weights, baseline: the same nodes from "
                "scratch (the point's mean above pools transfer nodes only)")
    console.print(_stage_table(
        f"leave-out tree: {summary.metric} per stage ({arrow} is better)",
        rows, names, fmt, baseline, held=False))
    console.print(how, markup=False)
    if baseline:
        console.print(caveat(held), markup=False)
    if held:
        console.print(_stage_table(
            f"leave-out tree: {held_metric(summary)} on the held-out test set per stage "
            "(never trained on by any node)", rows, names, fmt, baseline, held=True))
        console.print(f"{held_metric(summary)}: {arrow} is better; the columns as above",
                      markup=False)


def _stage_table(title: str, rows: Sequence[PointRow], names: list[str], fmt: Fmt,
                 baseline: bool, held: bool) -> Table:
    """The per-stage table of the sweep metric, or with ``held`` of the held-out one."""
    table = Table(title=title)
    columns = ["point", *names, "stage", "transfer"]
    if baseline:
        columns += ["baseline", "transfer - baseline", "better"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        for index, found in enumerate(row.stages or []):
            stage = found.held_out if held else found
            head = ([str(row.point), *(fmt(row.params.get(n, "")) for n in names)]
                    if index == 0 else [""] * (1 + len(names)))
            if stage is None:  # not reported at this stage (cannot be: all or none)
                table.add_row(*head, str(found.stage), "-", *(["-"] * 3 if baseline else []))
                continue
            cells = [str(found.stage), stage.transfer.text()]
            if baseline:
                cells += ["-" if stage.baseline is None else stage.baseline.text(),
                          "-" if stage.diff is None else f"{stage.diff:+.4g}",
                          stage.better or "-"]
            table.add_row(*head, *cells)
    return table


def print_holdout(console: Console, summary: Summary, names: list[str], fmt: Fmt) -> None:
    rows = [r for r in summary.rows if r.held_out is not None and r.held_out.holdout]
    table = Table(title=f"held-out test set, never trained on: {summary.holdout_metric}")
    for column in ("point", *names, f"{summary.metric} (validation)",
                   f"{summary.holdout_metric} (test)"):
        table.add_column(column)
    for row in rows:
        held = row.held_out.holdout if row.held_out is not None else None
        table.add_row(str(row.point), *(fmt(row.params.get(n, "")) for n in names),
                      row_cell(row).text(), "-" if held is None else held.text())
    console.print(table)
    console.print(f"{summary.holdout_metric}: groups kept out of every fold; the search ranks "
                  f"by {summary.metric} alone. mean ± std (done/planned)", markup=False)


def print_studies(console: Console, summary: Summary, names: list[str], fmt: Fmt,
                  arrow: str) -> None:
    studies = list(summary.study_metrics)
    table = Table(title=f"cross-study: {within_label(summary)} vs each target study "
                        f"({arrow} is better)")
    for column in ("point", *names, within_label(summary),
                   *(f"{s}: {summary.study_metrics[s]}" for s in studies)):
        table.add_column(column)
    for row in summary.rows:
        if row.held_out is None:
            continue
        table.add_row(str(row.point), *(fmt(row.params.get(n, "")) for n in names),
                      row_cell(row).text(), *_study_cells(row, studies))
    console.print(table)
    console.print("each: mean ± std over the point's jobs (done/planned)", markup=False)


def _study_cells(row: PointRow, studies: Sequence[str]) -> list[str]:
    found = row.held_out.studies if row.held_out is not None else {}
    return [found[s].text() if s in found else "-" for s in studies]
