"""`candle report`: PNG plots and one self-contained HTML page from a run directory.

The grid and CV runs are real `candle run`s of a user model (no TensorFlow, ~1-2 s each);
the capped-curves and UQ runs are written straight into a run directory."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from candle.plan import iter_jobs
from candle.reporting import page, plots
from candle.spec import load_sweep
from candle.store import RunStore
from candle.supervisor.run import run_meta
from candle.uq.predictions import Predictions, save
from candle.uq.summary import UQRow
from tests.conftest import run_candle, write

MODEL = '''
def objective(params):
    lr, act = params["lr"], params["act"]
    final = abs(lr - 0.01) * 10 + (0.1 if act == "tanh" else 0.0) + 0.05 * (params["fold"] or 0)
    losses = [final + 1.0 / (epoch + 1) - 0.2 for epoch in range(params["epochs"])]
    if not params["with_history"]:
        return {"val_loss": losses[-1]}
    return {"val_loss": losses[-1],
            "history": {"val_loss": losses, "loss": [0.9 * x for x in losses]}}
'''

GRID = """
name: {name}
benchmark: "model:objective"
params: {{epochs: 4, with_history: {history}}}
search:
  method: grid
  space: {{lr: [0.001, 0.01, 0.1], act: [relu, tanh]}}
  metric: val_loss
resources: {{scheduler: local, max_concurrent: 3}}
store: runs
"""

CV = """
name: cv
benchmark: "model:objective"
params: {epochs: 2, with_history: false, act: relu}
search:
  method: grid
  space: {lr: [0.001, 0.1]}
  metric: val_loss
cv: {folds: 3}
resources: {scheduler: local, max_concurrent: 3}
store: runs
"""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def real_run(tmp: Path, name: str, sweep_text: str) -> RunStore:
    write(tmp / "model.py", MODEL)
    sweep = write(tmp / f"{name}.yaml", sweep_text)
    proc = run_candle("run", str(sweep), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return RunStore(tmp / "runs" / name).require()


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """3 x 2 grid, 6 jobs, 4 epochs of val_loss history each."""
    return real_run(tmp_path_factory.mktemp("grid"), "grid",
                    GRID.format(name="grid", history="true"))


def report(cli: Any, store: RunStore, out: Path) -> str:
    result = cli("report", str(store.root), "--out", str(out))
    assert result.code == 0, result.err
    index = out / "index.html"
    assert result.out.strip().startswith(f"report: {index} (")
    return index.read_text(encoding="utf-8")


def embedded_images(html: str) -> dict[str, bytes]:
    """PNG file name -> the bytes embedded in the <img> its link wraps."""
    found = re.findall(r'<a href="([^"]+\.png)"><img src="data:image/png;base64,([^"]+)"',
                       html)
    return {name: base64.b64decode(data) for name, data in found}


def assert_images_sound(out: Path, html: str) -> set[str]:
    files = {p.name for p in out.glob("*.png")}
    embedded = embedded_images(html)
    assert set(embedded) == files  # every PNG is on the page, and nothing else
    for name in files:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert embedded[name] == data  # the page works alone: same image inline
        pixels = imread(str(out / name))
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert float(np.std(pixels)) > 0.01, f"{name} is blank"
    # Self-contained: nothing fetched from anywhere.
    assert not re.search(r"<script|<link|https?://|@import|url\(", html)
    return files


def plan_of(store: RunStore) -> tuple[page.ReportData, dict[str, page.Plot], page.PlotPlan]:
    data = page.collect(store)
    plan = page.plan_plots(data)
    return data, {p.name: p for p in plan.plots}, plan


def histories(store: RunStore) -> dict[str, list[float]]:
    found = {}
    for job in store.jobs():
        result = store.result(job.id)
        assert result is not None
        found[job.id] = result["history"]["val_loss"]
    return found


def test_grid_report_has_every_plot_and_a_self_contained_page(grid_run: RunStore, tmp_path: Path,
                                                               cli: Any) -> None:
    out = tmp_path / "report"
    html = report(cli, grid_run, out)
    files = assert_images_sound(out, html)
    assert files == {"learning_curves.png", "metric_vs_act.png", "metric_vs_lr.png",
                     "parallel_coordinates.png"}
    # The page: run facts, counts, the best point first, and why UQ and CV are absent.
    assert "<h1>grid</h1>" in html and "model:objective" in html
    counts = re.search(r"<h2>Jobs</h2>\s*<table>.*?<tbody><tr>(.*?)</tr>", html, re.S)
    assert counts is not None
    cells = re.findall(r">(\d+)</td>", counts[1])
    assert cells == ["6", "0", "0", "6", "0", "0", "0", "0", "0"]  # total, pending, running, ...
    top = re.search(r'<tr class="best"><td class="num">(\d+)</td><td>([^<]*)</td>', html)
    assert top is not None and top[2] == "act=relu, lr=0.01"
    assert "UQ calibration and spread</b>: the sweep has no uq: section" in html
    assert "cross-validation folds</b>: the sweep does not cross-validate" in html


def test_learning_curves_one_line_per_job_best_first(grid_run: RunStore) -> None:
    data, by_name, _ = plan_of(grid_run)
    fig = by_name["learning_curves.png"].make()
    ax = fig.axes[0]
    assert len(ax.lines) == 6
    expected = histories(grid_run)
    drawn = sorted(tuple(line.get_ydata()) for line in ax.lines)  # type: ignore[arg-type]
    assert drawn == sorted(tuple(v) for v in expected.values())
    assert all(list(line.get_xdata()) == [1, 2, 3, 4] for line in ax.lines)  # type: ignore[arg-type]
    best = min(data.jobs, key=lambda v: v.value if v.value is not None else 1e9)
    assert best.job.point_params == {"lr": 0.01, "act": "relu"}
    assert list(ax.lines[0].get_ydata()) == expected[best.job.id]  # type: ignore[arg-type]
    assert ax.get_legend().get_texts()[0].get_text().startswith(best.job.id[:8])
    assert ax.get_ylabel() == "val_loss" and ax.get_xlabel() == "epoch"


def test_metric_vs_each_varied_param_and_parallel_coordinates(grid_run: RunStore) -> None:
    data, by_name, _ = plan_of(grid_run)
    assert page.varied_params(data) == ["act", "lr"]
    finals = sorted((v.job.point_params["lr"], v.value or 0.0) for v in data.jobs)
    ax = by_name["metric_vs_lr.png"].make().axes[0]
    points = sorted((float(x), float(y)) for x, y in ax.collections[0].get_offsets())
    assert len(points) == 6
    assert [c for p in points for c in p] == pytest.approx([c for f in finals for c in f])
    assert ax.get_xscale() == "log"  # 0.001 .. 0.1 spans two decades
    ax = by_name["metric_vs_act.png"].make().axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu", "tanh"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 6  # every job a dot
    fig = by_name["parallel_coordinates.png"].make()
    ax = fig.axes[0]
    assert len(ax.lines) == 6  # one per point
    assert [t.get_text() for t in ax.get_xticklabels()] == ["act", "lr", "val_loss"]
    for line in ax.lines:
        ys = list(line.get_ydata())  # type: ignore[arg-type]
        assert len(ys) == 3 and all(0.0 <= y <= 1.0 for y in ys)
        assert ys[0] in (0.0, 1.0)  # two categories: ranks 0 and 1
    assert len(fig.axes) == 2  # and the colour bar


def test_cv_run_draws_folds_and_notes_missing_histories(tmp_path: Path, cli: Any) -> None:
    store = real_run(tmp_path, "cv", CV)
    out = tmp_path / "report"
    html = report(cli, store, out)
    files = assert_images_sound(out, html)
    assert files == {"cv_folds.png", "metric_vs_lr.png"}  # one varied param: no parallel
    assert "learning curves</b>: no job has a per-epoch history of val_loss" in html
    assert "parallel coordinates</b>: needs two or more varied parameters (1 vary)" in html
    assert "<h2>Cross-validation</h2>" in html
    _, by_name, _ = plan_of(store)
    ax = by_name["cv_folds.png"].make().axes[0]
    assert len(ax.collections) >= 3
    assert [len(c.get_offsets()) for c in ax.collections[:3]] == [2, 2, 2]  # 3 folds x 2
    fold_ys = [sorted(float(y) for _, y in c.get_offsets()) for c in ax.collections[:3]]
    assert fold_ys[1] == pytest.approx([f + 0.05 for f in fold_ys[0]])  # fold 1 = fold 0 + .05
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]  # lr=0.001 is better


def test_a_run_without_history_skips_the_learning_curves(tmp_path: Path, cli: Any) -> None:
    store = real_run(tmp_path, "flat", GRID.format(name="flat", history="false"))
    out = tmp_path / "report"
    html = report(cli, store, out)
    files = assert_images_sound(out, html)
    assert "learning_curves.png" not in files
    assert files == {"metric_vs_act.png", "metric_vs_lr.png", "parallel_coordinates.png"}
    assert re.search(r"<li><b>learning curves</b>: no job has a per-epoch history", html)


def written_store(tmp_path: Path, points: int, history: bool = True) -> RunStore:
    sweep = load_sweep(write(tmp_path / "s.yaml", f"""
        name: many
        benchmark: "m:f"
        search:
          method: grid
          space: {{x: {list(range(points))}}}
          metric: val_loss
    """))
    store = RunStore(sweep.run_dir)
    jobs = list(iter_jobs(sweep))
    store.initialise(sweep.text, run_meta(sweep), jobs)
    for job in jobs:
        x = float(job.point_params["x"])
        record: dict[str, Any] = {"status": "done", "metrics": {"val_loss": x}}
        if history:
            record["history"] = {"val_loss": [x + 2, x + 1, x]}
        store.write_result(job.id, record)
    return store


def test_learning_curves_capped_at_50_best(tmp_path: Path, cli: Any) -> None:
    store = written_store(tmp_path, 60)
    _, by_name, _ = plan_of(store)
    plot = by_name["learning_curves.png"]
    assert "showing 50 of 60" in plot.caption
    ax = plot.make().axes[0]
    assert len(ax.lines) == 50
    finals = sorted(float(line.get_ydata()[-1]) for line in ax.lines)  # type: ignore[index]
    assert finals == [float(x) for x in range(50)]  # the 50 best (lowest) of 60
    assert "showing 50 of 60" in ax.get_title()
    html = report(cli, store, tmp_path / "report")
    assert "showing 50 of 60" in html


def test_uq_run_gets_calibration_spread_and_table(tmp_path: Path, cli: Any) -> None:
    sweep = load_sweep(write(tmp_path / "s.yaml", """
        name: uq
        benchmark: "m:f"
        search: {method: grid, space: {w: [1, 2]}, metric: val_loss}
        uq: {replicas: 3}
    """))
    store = RunStore(sweep.run_dir)
    jobs = list(iter_jobs(sweep))
    store.initialise(sweep.text, run_meta(sweep), jobs)
    y = np.linspace(0.0, 1.0, 50)
    for job in jobs:
        rng = np.random.default_rng(job.seed)
        mean = y + rng.normal(0.0, 0.05 * job.point_params["w"], y.shape)
        save(store.job_dir(job.id), Predictions("regression", y, mean.astype(np.float32)))
        store.write_result(job.id, {"status": "done", "metrics": {"val_loss": 0.1}})
    out = tmp_path / "report"
    html = report(cli, store, out)
    files = assert_images_sound(out, html)
    assert {"uq_calibration.png", "uq_spread.png"} <= files
    assert "<h2>Uncertainty (UQ)</h2>" in html and "calibration_error" in html
    _, by_name, _ = plan_of(store)
    ax = by_name["uq_calibration.png"].make().axes[0]
    assert len([line for line in ax.lines if line.get_gid() != plots.DIAGONAL]) == 2


def uq_row(point: int, kind: str = "regression", n: int = 200) -> UQRow:
    rng = np.random.default_rng(point)
    curve = [(t, min(1.0, t * (0.8 + 0.1 * point))) for t in (0.1, 0.3, 0.5, 0.7, 0.9)]
    return UQRow(point=point, params={"p": point}, kind=kind, method="ensemble", members=3,
                 jobs=3, samples=n, metrics={"spread": 0.1}, calibration=curve,
                 spreads=[float(s) for s in rng.gamma(2.0, 0.05 * (point + 1), n)])


def test_uq_calibration_one_line_per_row_and_the_diagonal() -> None:
    rows = [uq_row(p) for p in range(3)]
    fig = plots.uq_calibration(rows)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 4
    diagonal = [line for line in ax.lines if line.get_gid() == plots.DIAGONAL]
    assert len(diagonal) == 1
    assert list(diagonal[0].get_xdata()) == [0, 1] == list(diagonal[0].get_ydata())  # type: ignore[arg-type]
    data = [line for line in ax.lines if line.get_gid() != plots.DIAGONAL]
    for line, row in zip(data, rows, strict=True):
        assert list(line.get_xdata()) == [e for e, _ in row.calibration]  # type: ignore[arg-type]
        assert list(line.get_ydata()) == [o for _, o in row.calibration]  # type: ignore[arg-type]
    assert ax.get_xlabel() == "expected quantile level"


def test_uq_calibration_classification_is_a_reliability_diagram() -> None:
    fig = plots.uq_calibration([uq_row(0), uq_row(1, "classification"),
                                uq_row(2, "classification")])
    by_title = {ax.get_title(): ax for ax in fig.axes}
    assert set(by_title) == {"regression calibration", "reliability diagram"}
    reliability = by_title["reliability diagram"]
    assert reliability.get_xlabel().startswith("confidence")
    assert reliability.get_ylabel() == "accuracy"
    assert len(reliability.lines) == 3  # two rows and the diagonal
    assert len(by_title["regression calibration"].lines) == 2


def test_uq_spread_one_histogram_per_row_capped() -> None:
    rows = [uq_row(p) for p in range(3)]
    ax = plots.uq_spread(rows).axes[0]
    assert len(ax.patches) == 3  # step histograms: one outline each
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "point 0 (regression)", "point 1 (regression)", "point 2 (regression)"]
    many = [uq_row(p, n=50) for p in range(12)]
    assert len(plots.uq_spread(many).axes[0].patches) == plots.SPREAD_CAP == 8


def test_report_of_a_non_run_directory_is_a_user_error(tmp_path: Path, cli: Any) -> None:
    result = cli("report", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.code == 2
    assert result.err.strip() == (f"{tmp_path}: not a candle run directory "
                                  "(no plan.jsonl / run.json)")
    assert not (tmp_path / "out").exists()


def test_report_out_must_be_a_directory(tmp_path: Path, cli: Any) -> None:
    store = written_store(tmp_path, 2)
    target = write(tmp_path / "taken", "a file\n")
    result = cli("report", str(store.root), "--out", str(target))
    assert result.code == 2
    assert result.err.strip() == f"{target}: --out must be a directory; this is a file"
    assert target.read_text() == "a file\n"


def test_a_second_report_shows_the_run_as_it_is_now(tmp_path: Path, cli: Any) -> None:
    """A second report into the same folder rewrites the page for the run as it is now."""
    store = written_store(tmp_path, 3)
    job = next(store.jobs())
    (store.job_dir(job.id) / "result.json").unlink()  # that job has not finished yet
    out = tmp_path / "report"
    first = report(cli, store, out)
    assert "<td class=\"num\">3</td><td class=\"num\">1</td>" in first  # 3 total, 1 pending
    store.write_result(job.id, {"status": "failed", "error": "ValueError: boom",
                                "metrics": {}})
    second = report(cli, store, out)
    assert "ValueError: boom" in second and "ValueError: boom" not in first
    assert f"<code>{job.id}</code>" in second
