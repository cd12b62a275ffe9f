"""`candle summary`: one row per search point, metric mean ± std over folds and replicas;
for a UQ run each point's ensemble numbers, for a CV run its metric per fold; for issue
21's designs its leave-out stages and its held-out / cross-study test sets
(candle.reporting.designs).

A leave-out tree's point row pools its transfer nodes only (the tree itself, each node
from its parent's weights): its from-scratch baseline nodes are there to compare against,
per stage (candle.reporting.leaveout), not to be averaged into the point's mean."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from candle.reporting.cells import base_metric
from candle.reporting.cross_study import PointHeldOut, held_out_sets
from candle.reporting.cv import FoldTable, Results, Tally, fold_table, mean_std, tally
from candle.reporting.designs import Found, find_designs
from candle.reporting.leaveout import StageRow
from candle.spec.model import direction_sign
from candle.store.run_store import RunStore

if TYPE_CHECKING:
    from candle.uq.summary import UQRow


@dataclass
class PointRow:
    point: int
    params: dict[str, Any]
    mean: float | None
    std: float | None
    n: int
    failed: int
    pending: int
    best: bool = False
    uq: dict[str, Any] | None = None  # UQRow.to_dict(): the point's ensemble numbers
    folds: list[float | None] | None = None  # CV: the metric per fold (replicas averaged)
    repeats: int | None = None  # repeated CV: the draws each fold's value averages
    stages: list[StageRow] | None = None  # a leave-out tree: the metric per stage (mean,
    # std, n, failed, pending: over its transfer nodes only, not the baselines)
    held_out: PointHeldOut | None = None  # test_<m> and test_<STUDY>_<m>

    def to_dict(self, metric: str) -> dict[str, Any]:
        out = {"point": self.point, "params": self.params, "metric": metric,
               "mean": self.mean, "std": self.std, "n": self.n, "failed": self.failed,
               "pending": self.pending, "best": self.best}
        if self.uq is not None:
            out["uq"] = self.uq
        if self.folds is not None:
            out["folds"] = self.folds
        if self.repeats is not None:
            out["repeats"] = self.repeats
        if self.stages is not None:
            out["stages"] = [s.to_dict() for s in self.stages]
        if self.held_out is not None:
            out.update(_held_out_dict(self.held_out, base_metric(metric)))
        return out


def _held_out_dict(held: PointHeldOut, base: str) -> dict[str, Any]:
    """``holdout`` and ``studies`` as `--format json` shows them, each naming its metric."""
    out: dict[str, Any] = {}
    if held.holdout is not None:
        out["holdout"] = {"metric": f"test_{base}", **held.holdout.to_dict()}
    if held.studies:
        out["studies"] = {study: {"metric": f"test_{study}_{base}", **cell.to_dict()}
                          for study, cell in held.studies.items()}
    return out


@dataclass
class Summary:
    metric: str
    direction: str
    rows: list[PointRow]
    uq_method: str | None = None
    uq_kind: str | None = None  # regression | classification, once predictions exist
    fold_assignments: list[str] | None = None  # CV: run-relative .npy files (fold per sample)
    uq_rows: list[UQRow] = field(default_factory=list)  # with calibration curves and spreads
    fold_table: FoldTable | None = None
    holdout_metric: str | None = None  # test_<m>, where the run holds a test set out
    study_metrics: dict[str, str] = field(default_factory=dict)  # study -> test_<STUDY>_<m>
    train_studies: list[str] = field(default_factory=list)  # cross-study: trained on

    @property
    def stages(self) -> bool:
        """A leave-out tree run (its rows carry the metric per stage)."""
        return any(r.stages for r in self.rows)


def read_results(store: RunStore) -> dict[str, dict[str, Any] | None]:
    """Every job's whole result (None: not finished), one read each: for the report page,
    which plots histories. The tables need less: `RunStore.results` (cached)."""
    return {job.id: store.result(job.id) for job in store.jobs()}


def summarise(store: RunStore, results: Results | None = None) -> Summary:
    store.require()
    manifest = store.manifest()
    metric, direction = manifest.metric, manifest.direction
    if results is None:  # opens only the results new since the cache's last refresh
        results = store.results()
    found = find_designs(store, results, metric, direction)
    baselines: frozenset[str] = frozenset()
    if found.stages:  # a leave-out tree (only then are the plan's Jobs built)
        baselines = _baselines(store, results, metric, found)
    counted = tally(store, results, metric, baselines)
    rows = []
    for point, point_params in counted.params.items():
        values = counted.values.get(point)
        failed, pending = counted.failed.get(point, 0), counted.pending.get(point, 0)
        if values:
            mean, std = mean_std(values)
            rows.append(PointRow(point, point_params, mean, std, len(values), failed,
                                 pending))
        else:
            rows.append(PointRow(point, point_params, None, None, 0, failed, pending))
    sign = direction_sign(direction)
    rows.sort(key=lambda r: (r.mean is None, sign * (r.mean or 0.0), r.point))
    if rows and rows[0].mean is not None:
        rows[0].best = True
    summary = Summary(metric, direction, rows)
    _add_uq_and_folds(store, summary, results, counted)
    _add_designs(summary, found)
    return summary


def _baselines(store: RunStore, results: Results, metric: str, found: Found
                   ) -> frozenset[str]:
    """A leave-out tree's baseline jobs, for the point's numbers to leave out (stage 1 and
    every node started from its parent count); the held-out and cross-study test sets in
    ``found`` are recounted likewise, so a point's test numbers stand on the same jobs."""
    jobs = store.plan().jobs()
    if found.held is not None:
        kept = [job for job in jobs if not job.baseline]
        held = held_out_sets([j.id for j in kept], [j.point for j in kept], results, metric,
                             found.planned.test_studies)
        found.held.points = {} if held is None else held.points
    return frozenset(job.id for job in jobs if job.baseline)


def _add_uq_and_folds(store: RunStore, summary: Summary, results: Results,
                      counted: Tally) -> None:
    from candle.uq import summarise_uq

    by_point = {r.point: r for r in summary.rows}
    manifest = store.manifest()
    if manifest.uq:
        summary.uq_method = manifest.uq_method
        summary.uq_rows = summarise_uq(store, results)
        for row in summary.uq_rows:
            by_point[row.point].uq = row.to_dict()
            summary.uq_kind = row.kind
    summary.fold_table = fold_table(store, counted)
    if summary.fold_table is not None:
        summary.fold_assignments = summary.fold_table.assignments
        for fold_row in summary.fold_table.rows:
            by_point[fold_row.point].folds = fold_row.values


def _add_designs(summary: Summary, found: Found) -> None:
    """Issue 21's tables into the rows (nothing for an ordinary run)."""
    by_point = {r.point: r for r in summary.rows}
    if found.held is not None:
        summary.holdout_metric = found.held.holdout
        summary.study_metrics = found.held.studies
        summary.train_studies = list(found.planned.train_studies)
        for point, cells in found.held.points.items():
            if point in by_point:
                by_point[point].held_out = cells
    for point, stages in found.stages.items():
        if point in by_point:
            by_point[point].stages = stages
    repeats = found.planned.repeats
    if repeats > 1 and summary.fold_table is not None:
        summary.fold_table.repeats = repeats
        for row in summary.rows:
            if row.folds is not None:
                row.repeats = repeats


def plot_summary(summary: Summary, path: Any) -> None:
    """Each point's mean with its std as an error bar, best first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary.rows if r.mean is not None][:40]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.25 * len(rows) + 2), 4))
    ax.errorbar(range(len(rows)), [r.mean or 0.0 for r in rows], yerr=[r.std or 0.0 for r in rows],
                fmt="o", capsize=3)
    ax.set_xticks(range(len(rows)), [str(r.point) for r in rows])
    ax.set_xlabel("point (best first)")
    ax.set_ylabel(f"{summary.metric} mean ± std")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
