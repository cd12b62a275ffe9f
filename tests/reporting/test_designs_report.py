"""`candle summary` and `candle report` for issue 21's designs: a leave-out tree's metric
per stage against its from-scratch baseline, cross-study and held-out test sets apart from
the validation metric, repeated CV's folds over their repeats.

Run directories are written straight (plan + results, no training): the plan's Jobs are
made here with the tree's fields, so the reports are tested apart from the planner."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from candle.plan import iter_jobs
from candle.plan.jobs import Job
from candle.reporting import page, plots_designs, summarise, summary_cache
from candle.reporting.cross_study import held_out_keys
from candle.reporting.summary_cache import summarise_cached
from candle.spec import load_sweep
from candle.store import RunStore
from candle.store.plan_cache import Plan
from candle.supervisor.run import run_meta
from tests.conftest import CliResult, write

PLAIN = """
name: {name}
benchmark: "m:f"
search:
  method: grid
  space: {{a: [1, 2]}}
  metric: {metric}
{cv}
"""
Cli = Callable[..., CliResult]
TREE_TEXT = "stages: {depth: 2, children: 2, split: cell_drug, baseline: true}\n"

# point a -> stage -> kind -> values, one per (node, replica) in node order, replica inner
TREE = {
    1: {1: {"transfer": [1.0, 1.2, 1.1, 1.3]},
        2: {"transfer": [0.8, 0.9, 0.7, 0.8, 0.9, 1.0, 0.6, 0.7],
            "baseline": [1.4, 1.5, 1.3, 1.2, 1.6, 1.5, 1.4, 1.3]}},
    2: {1: {"transfer": [2.0, 2.2, 2.4, 2.6]},
        2: {"transfer": [2.5, 2.7, 2.6, 2.8, 2.4, 2.6, 2.7, 2.9],
            "baseline": [2.1, 2.0, 2.2, 2.3, 2.1, 2.2, 2.0, 2.1]}},
}
PENDING = ("1", "2.2", True, 1)  # (a, node, baseline, replica) left without a result


def _id(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def tree_jobs(point: int, a: int) -> list[Job]:
    """Depth 2, children 2, with baselines, 2 replicas; a child's parent is its stage-1
    node's job of the same replica."""
    jobs = []
    for replica in (0, 1):
        firsts = {}
        for part in ("1", "2"):
            job = Job(_id(a, part, replica), point, {"a": a}, {"a": a}, None, None, replica,
                      replica, node=part, parent=None)
            firsts[part] = job.id
            jobs.append(job)
        for part in ("1.1", "1.2", "2.1", "2.2"):
            parent = firsts[part.split(".")[0]]
            jobs.append(Job(_id(a, part, replica, "t"), point, {"a": a}, {"a": a}, None,
                            None, replica, replica, node=part, parent=parent))
            jobs.append(Job(_id(a, part, replica, "b"), point, {"a": a}, {"a": a}, None,
                            None, replica, replica, node=part, parent=None))
    return jobs


def tree_value(job: Job) -> float:
    kind = "baseline" if job.baseline else "transfer"
    parts = ["1", "2"] if job.stage == 1 else ["1.1", "1.2", "2.1", "2.2"]
    index = parts.index(job.node or "") * 2 + job.replica
    return TREE[job.point_params["a"]][job.stage][kind][index]


# the held-out test set's test_loss: val_loss plus this per (stage, kind). At stage 2 the
# children's validation parts were in their parents' training rows, so transfer's val_loss
# flatters it; on the held-out set (never trained on) a=1's baseline wins instead.
HELD_SHIFT = {(1, "transfer"): 0.1, (2, "transfer"): 0.8, (2, "baseline"): -0.2}


def held_value(job: Job) -> float:
    return tree_value(job) + HELD_SHIFT[job.stage, "baseline" if job.baseline else "transfer"]


def make_tree(tmp_path: Path, holdout: bool = False) -> RunStore:
    sweep = load_sweep(write(tmp_path / "t.yaml", PLAIN.format(name="tree", metric="val_loss",
                                                               cv="") + TREE_TEXT))
    store = RunStore(sweep.run_dir)
    jobs = tree_jobs(0, 1) + tree_jobs(1, 2)
    assert len(jobs) == 2 * 2 * (2 + 4 + 4)
    store.initialise(sweep.text, run_meta(sweep), jobs)
    for job in jobs:
        if (str(job.point_params["a"]), job.node, job.baseline, job.replica) == PENDING:
            continue
        metrics = {"val_loss": tree_value(job)}
        if holdout:
            metrics["test_loss"] = held_value(job)
        store.write_result(job.id, {"status": "done", "metrics": metrics,
                                    "node": job.node, "init_from": job.parent})
    return store


def _refuse(*args: object) -> None:
    raise AssertionError("summarised again: the kept summary was not used")


def stages_of(summary: Any, a: int) -> dict[int, Any]:
    row = next(r for r in summary.rows if r.params["a"] == a)
    return {s.stage: s for s in row.stages}


def test_tree_per_stage_transfer_and_baseline(tmp_path: Path) -> None:
    summary = summarise(make_tree(tmp_path))
    one, two = stages_of(summary, 1), stages_of(summary, 2)
    assert sorted(one) == [1, 2]
    first = TREE[1][1]["transfer"]
    assert one[1].transfer.mean == pytest.approx(statistics.mean(first))
    assert one[1].transfer.std == pytest.approx(statistics.stdev(first))
    assert (one[1].transfer.done, one[1].transfer.total) == (4, 4)
    assert one[1].baseline is None and one[1].diff is None  # stage 1 has no twin
    transfer, baseline = TREE[1][2]["transfer"], TREE[1][2]["baseline"]
    kept = baseline[:7]  # node 2.2's replica 1 baseline is still pending
    assert one[2].transfer.mean == pytest.approx(statistics.mean(transfer))
    assert one[2].baseline is not None
    assert one[2].baseline.mean == pytest.approx(statistics.mean(kept))
    assert one[2].baseline.std == pytest.approx(statistics.stdev(kept))
    assert (one[2].baseline.done, one[2].baseline.total) == (7, 8)
    assert one[2].diff == pytest.approx(statistics.mean(transfer) - statistics.mean(kept))
    assert one[2].diff < 0 and one[2].better == "transfer"  # val_loss: lower is better
    # point a=2: the baseline wins at stage 2
    t2, b2 = TREE[2][2]["transfer"], TREE[2][2]["baseline"]
    assert two[2].diff == pytest.approx(statistics.mean(t2) - statistics.mean(b2))
    assert two[2].diff > 0 and two[2].better == "baseline"
    assert two[1].transfer.mean == pytest.approx(2.3)
    assert all(s.held_out is None for s in (*one.values(), *two.values()))  # no test_loss


def test_tree_point_mean_pools_transfer_nodes_only(tmp_path: Path) -> None:
    """The main table's mean is the tree's own (stage 1 and every node started from its
    parent): the from-scratch baselines are for the per-stage comparison only."""
    summary = summarise(make_tree(tmp_path))
    for a in (1, 2):
        row = next(r for r in summary.rows if r.params["a"] == a)
        transfer = TREE[a][1]["transfer"] + TREE[a][2]["transfer"]
        assert row.mean == pytest.approx(statistics.mean(transfer))
        assert row.std == pytest.approx(statistics.stdev(transfer))
        # the one pending job is a baseline: not counted here
        assert (row.n, row.failed, row.pending) == (12, 0, 0)
    assert [r.params["a"] for r in summary.rows] == [1, 2] and summary.rows[0].best


def test_tree_held_out_per_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 cli: Cli) -> None:
    store = make_tree(tmp_path, holdout=True)
    summary = summarise(store)
    assert summary.holdout_metric == "test_loss"
    one, two = stages_of(summary, 1), stages_of(summary, 2)
    first = one[1].held_out
    assert first is not None and first.stage == 1 and first.baseline is None
    assert first.transfer.mean == pytest.approx(statistics.mean(TREE[1][1]["transfer"]) + 0.1)
    assert (first.transfer.done, first.transfer.total) == (4, 4)
    held = one[2].held_out
    assert held is not None and held.baseline is not None
    transfer = [v + 0.8 for v in TREE[1][2]["transfer"]]
    kept = [v - 0.2 for v in TREE[1][2]["baseline"][:7]]  # one baseline still pending
    assert held.transfer.mean == pytest.approx(statistics.mean(transfer))
    assert held.transfer.std == pytest.approx(statistics.stdev(transfer))
    assert held.baseline.mean == pytest.approx(statistics.mean(kept))
    assert (held.baseline.done, held.baseline.total) == (7, 8)
    assert held.diff == pytest.approx(statistics.mean(transfer) - statistics.mean(kept))
    # validation says transfer, the held-out test set says baseline
    assert one[2].better == "transfer" and held.better == "baseline"
    assert two[2].held_out is not None and two[2].held_out.better == "baseline"
    assert two[2].held_out.diff == pytest.approx(
        statistics.mean(TREE[2][2]["transfer"]) + 0.8
        - statistics.mean(TREE[2][2]["baseline"]) + 0.2)
    # the point's held-out cell pools its transfer nodes only, as its mean does
    row = next(r for r in summary.rows if r.params["a"] == 1)
    assert row.held_out is not None and row.held_out.holdout is not None
    pooled = [v + 0.1 for v in TREE[1][1]["transfer"]] + transfer
    assert row.held_out.holdout.mean == pytest.approx(statistics.mean(pooled))
    assert (row.held_out.holdout.done, row.held_out.holdout.total) == (12, 12)

    result = cli("summary", str(store.root), "--format", "json")
    rows = {r["params"]["a"]: r for r in json.loads(result.out)}
    stage2 = rows[1]["stages"][1]
    assert stage2["better"] == "transfer" and stage2["held_out"]["better"] == "baseline"
    assert stage2["held_out"]["baseline"] == {
        "mean": pytest.approx(statistics.mean(kept)),
        "std": pytest.approx(statistics.stdev(kept)), "done": 7, "total": 8}
    assert "stage" not in stage2["held_out"]
    with monkeypatch.context() as patch:  # the kept summary holds them too
        patch.setattr(summary_cache, "summarise", _refuse)
        kept_summary = summarise_cached(RunStore(store.root))
    assert [r.to_dict("val_loss") for r in kept_summary.rows] == list(json.loads(result.out))
    assert stages_of(kept_summary, 1)[2].held_out == held

    monkeypatch.setenv("COLUMNS", "200")
    table = " ".join(cli("summary", str(store.root)).out.split())  # a title may wrap
    assert ("leave-out tree: test_loss on the held-out test set per stage (never trained "
            "on by any node)") in table
    assert "validation part was in its parent's training rows" in table
    assert "held-out table below is the fair comparison" in table
    assert f"{statistics.mean(kept):.4g}" in table and f"{held.diff:+.4g}" in table

    page.write_report(store, tmp_path / "out")
    html = (tmp_path / "out" / "index.html").read_text()
    assert "on the held-out test set, never trained on by any node" in html
    assert f"#{held.diff:+.4g}"[1:] in html and "the right one is the fair comparison" in html
    fig = plots_designs.leaveout_stages(summary.rows, "val_loss", "minimize",
                                        held_metric="test_loss")
    assert len(fig.axes) == 2
    right = fig.axes[1]
    transfer_lines = [line for line in right.lines if line.get_gid() == plots_designs.TRANSFER]
    baseline_lines = [line for line in right.lines if line.get_gid() == plots_designs.BASELINE]
    assert len(transfer_lines) == len(baseline_lines) == 2
    ys = [float(y) for y in transfer_lines[0].get_ydata()]  # type: ignore[union-attr,arg-type]
    assert ys == pytest.approx([first.transfer.mean, held.transfer.mean])
    ys = [float(y) for y in baseline_lines[0].get_ydata()]  # type: ignore[union-attr,arg-type]
    assert ys == pytest.approx([statistics.mean(kept)])


def test_tree_summary_json_console_and_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    store = make_tree(tmp_path)
    result = cli("summary", str(store.root), "--format", "json")
    rows = {r["params"]["a"]: r for r in json.loads(result.out)}
    stage2 = rows[1]["stages"][1]
    assert stage2["stage"] == 2 and stage2["better"] == "transfer"
    assert stage2["baseline"]["done"] == 7 and stage2["baseline"]["total"] == 8
    assert stage2["diff"] == pytest.approx(statistics.mean(TREE[1][2]["transfer"])
                                           - statistics.mean(TREE[1][2]["baseline"][:7]))
    assert "holdout" not in rows[1] and "studies" not in rows[1]
    assert (store.root / "index" / "summary.json").is_file()
    with monkeypatch.context() as patch:  # the kept summary holds the stages too
        patch.setattr(summary_cache, "summarise", _refuse)
        kept = summarise_cached(RunStore(store.root))
    assert kept.stages
    assert [r.to_dict("val_loss") for r in kept.rows] == list(json.loads(result.out))
    table = cli("summary", str(store.root)).out
    assert "leave-out tree: val_loss per stage" in table
    assert "transfer - baseline" in table and "baseline" in table
    assert f"{statistics.mean(TREE[1][2]['transfer']):.4g}" in table
    assert "held_out" not in stage2 and "held-out test set per stage" not in table
    assert ("only a held-out test set (cv.holdout) would compare them fairly"
            in " ".join(table.split()))


def test_tree_report_draws_stages(tmp_path: Path) -> None:
    store = make_tree(tmp_path)
    written = page.write_report(store, tmp_path / "out")
    image = tmp_path / "out" / "leaveout_stages.png"
    assert image in written.images and imread(str(image)).shape[0] > 100
    html = (tmp_path / "out" / "index.html").read_text()
    assert "<h2>Leave-out tree</h2>" in html and "leaveout_stages.png" in html
    summary = summarise(store)
    fig = plots_designs.leaveout_stages(summary.rows, "val_loss", "minimize")
    ax = fig.axes[0]
    transfer = [line for line in ax.lines if line.get_gid() == plots_designs.TRANSFER]
    baseline = [line for line in ax.lines if line.get_gid() == plots_designs.BASELINE]
    assert len(transfer) == len(baseline) == 2  # one per point
    best = summary.rows[0]  # a=1 (lower val_loss)
    assert best.params["a"] == 1
    ys = [float(y) for y in transfer[0].get_ydata()]  # type: ignore[union-attr,arg-type]
    assert ys == pytest.approx([statistics.mean(TREE[1][s]["transfer"]) for s in (1, 2)])
    xs = [float(x) for x in baseline[0].get_xdata()]  # type: ignore[union-attr,arg-type]
    assert xs == pytest.approx([2.04])
    assert len(fig.axes) == 1  # no held-out test set: no second panel
    assert "on the held-out test set" not in html


# -- cross-study and held-out test sets --------------------------------------------------
STUDIES = {  # a -> fold -> (val_mse, test_GDSC_mse, test_CTRP_mse, test_mse)
    1: {0: (0.10, 0.40, 0.60, 0.12), 1: (0.14, 0.44, 0.70, 0.16)},
    2: {0: (0.30, 0.50, 0.90, 0.31), 1: (0.20, 0.52, 0.80, 0.25)},
}
CROSS_TEXT = "  train_studies: [CCLE]\n  test_studies: [GDSC, CTRP]\n  holdout: 0.1\n"


def make_cross(tmp_path: Path, holdout: bool = True) -> RunStore:
    sweep = load_sweep(write(tmp_path / "c.yaml", PLAIN.format(
        name="cross", metric="val_mse", cv="cv:\n  folds: 2\n" + CROSS_TEXT)))
    store = RunStore(sweep.run_dir)
    jobs = list(iter_jobs(sweep))
    store.initialise(sweep.text, run_meta(sweep), jobs)
    for job in jobs:
        val, gdsc, ctrp, test = STUDIES[job.point_params["a"]][job.fold or 0]
        metrics = {"val_mse": val, "test_GDSC_mse": gdsc, "test_CTRP_mse": ctrp,
                   "test_GDSC_r2": 0.5, "val_r2": 0.9, "mse": 0.05}
        if holdout:
            metrics["test_mse"] = test
        store.write_result(job.id, {"status": "done", "metrics": metrics})
    return store


def test_held_out_keys_split_studies_from_the_holdout() -> None:
    keys = ["val_mse", "test_mse", "test_GDSC_mse", "test_gCSI_mse", "test_GDSC_r2",
            "test_NCI_60_mse", "mse"]
    assert held_out_keys("val_mse", keys) == (
        "test_mse", {"GDSC": "test_GDSC_mse", "NCI_60": "test_NCI_60_mse",
                     "gCSI": "test_gCSI_mse"})
    assert held_out_keys("val_r2", keys) == (None, {"GDSC": "test_GDSC_r2"})
    ordered = held_out_keys("val_mse", keys, ["gCSI", "GDSC"])[1]
    assert list(ordered) == ["gCSI", "GDSC", "NCI_60"]


def test_cross_study_per_study_values(tmp_path: Path, cli: Cli) -> None:
    store = make_cross(tmp_path)
    summary = summarise(store)
    assert summary.study_metrics == {"GDSC": "test_GDSC_mse", "CTRP": "test_CTRP_mse"}
    assert list(summary.study_metrics) == ["GDSC", "CTRP"]  # as the sweep lists them
    assert summary.holdout_metric == "test_mse" and summary.train_studies == ["CCLE"]
    assert [r.params["a"] for r in summary.rows] == [1, 2]  # ranked by val_mse
    one = summary.rows[0]
    assert one.mean == pytest.approx(0.12)  # within-study: val_mse over the folds
    assert one.held_out is not None and one.held_out.holdout is not None
    gdsc, ctrp = one.held_out.studies["GDSC"], one.held_out.studies["CTRP"]
    assert gdsc.mean == pytest.approx(0.42) and gdsc.std == pytest.approx(
        statistics.stdev([0.40, 0.44]))
    assert ctrp.mean == pytest.approx(0.65) and (ctrp.done, ctrp.total) == (2, 2)
    assert one.held_out.holdout.mean == pytest.approx(0.14)
    two = summary.rows[1].held_out
    assert two is not None and two.studies["CTRP"].mean == pytest.approx(0.85)
    rows = json.loads(cli("summary", str(store.root), "--format", "json").out)
    assert list(rows[0]["studies"]) == ["GDSC", "CTRP"]
    assert rows[0]["studies"]["GDSC"]["metric"] == "test_GDSC_mse"
    assert rows[0]["studies"]["GDSC"]["mean"] == pytest.approx(0.42)
    assert rows[0]["holdout"] == {"metric": "test_mse", "mean": pytest.approx(0.14),
                                  "std": pytest.approx(statistics.stdev([0.12, 0.16])),
                                  "done": 2, "total": 2}
    table = cli("summary", str(store.root)).out
    assert "cross-study: within CCLE: val_mse vs each target study" in table
    assert "GDSC: test_GDSC_mse" in table and "CTRP: test_CTRP_mse" in table
    assert "held-out test set, never trained on: test_mse" in table


def test_cross_study_report_draws_bars(tmp_path: Path) -> None:
    store = make_cross(tmp_path, holdout=False)
    written = page.write_report(store, tmp_path / "out")
    image = tmp_path / "out" / "cross_study.png"
    assert image in written.images and imread(str(image)).shape[0] > 100
    html = (tmp_path / "out" / "index.html").read_text()
    assert "<h2>Cross-study</h2>" in html and "<h2>Held-out test set</h2>" not in html
    summary = summarise(store)
    assert summary.holdout_metric is None
    fig = plots_designs.cross_study(summary.rows, "val_mse", "minimize",
                                    summary.study_metrics, "within")
    heights = [p.get_height() for p in fig.axes[0].patches]  # type: ignore[attr-defined]
    # bars series by series (within, GDSC, CTRP), points a=1, a=2 in each
    assert heights == pytest.approx([0.12, 0.25, 0.42, 0.51, 0.65, 0.85])


# -- repeated CV and the readable fold assignment ----------------------------------------
def test_repeated_cv_folds_average_their_repeats(tmp_path: Path, cli: Cli) -> None:
    sweep = load_sweep(write(tmp_path / "r.yaml", PLAIN.format(
        name="rep", metric="val_loss", cv="cv: {folds: 2, repeats: 2}")))
    store = RunStore(sweep.run_dir)
    jobs = list(iter_jobs(sweep))
    assert len(jobs) == 2 * 2 * 2 and {j.repeat for j in jobs} == {0, 1}
    store.initialise(sweep.text, run_meta(sweep), jobs)
    (store.root / "cv").mkdir()
    (store.root / "cv" / "folds-aa.npy").write_bytes(b"")
    (store.root / "cv" / "folds-aa.csv").write_text("sample,group,fold\n")
    for job in jobs:
        value = 1.0 + job.repeat + 10 * (job.fold or 0) + job.point_params["a"]
        store.write_result(job.id, {"status": "done", "metrics": {"val_loss": value},
                                    "fold_assignment": "cv/folds-aa.npy"})
    summary = summarise(store)
    table = summary.fold_table
    assert table is not None and table.repeats == 2
    assert table.tables == ["cv/folds-aa.csv"]
    one = next(r for r in table.rows if r.params["a"] == 1)
    assert one.values == pytest.approx([2.5, 12.5])  # each fold: repeats 0 and 1 averaged
    rows = json.loads(cli("summary", str(store.root), "--format", "json").out)
    assert rows[0]["repeats"] == 2 and rows[0]["folds"] == pytest.approx([2.5, 12.5])
    out = cli("summary", str(store.root)).out
    assert "CV: val_loss per fold (2 repeats)" in out
    assert "each fold is the mean over its 2 repeats" in out and "cv/folds-aa.csv" in out
    page.write_report(store, tmp_path / "out")
    html = (tmp_path / "out" / "index.html").read_text()
    assert "the mean over its 2 repeats" in html and "<code>cv/folds-aa.csv</code>" in html


def test_an_ordinary_run_builds_no_jobs_and_shows_no_design(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    """The design tables cost an ordinary summary nothing that grows with its jobs: it
    never builds the plan's Jobs (0.2 s at 10^5 jobs)."""
    sweep = load_sweep(write(tmp_path / "o.yaml", PLAIN.format(
        name="plain", metric="val_loss", cv="cv: {folds: 2}")))
    store = RunStore(sweep.run_dir)
    jobs = list(iter_jobs(sweep))
    store.initialise(sweep.text, run_meta(sweep), jobs)
    for job in jobs:
        store.write_result(job.id, {"status": "done", "metrics": {"val_loss": 1.0,
                                                                   "loss": 0.5}})

    def refuse(self: Plan) -> list[Job]:
        raise AssertionError("an ordinary summary built the plan's Jobs")

    monkeypatch.setattr(Plan, "jobs", refuse)
    summary = summarise(RunStore(store.root))
    assert not summary.stages and summary.holdout_metric is None and not summary.study_metrics
    rows = json.loads(cli("summary", str(store.root), "--format", "json").out)
    assert set(rows[0]) == {"point", "params", "metric", "mean", "std", "n", "failed",
                            "pending", "best", "folds"}
