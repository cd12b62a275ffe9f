"""The summary groups jobs by point and ranks means in the sweep's direction."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from candle.plan import iter_jobs
from candle.reporting import summarise
from candle.reporting.render import summary_csv
from candle.spec import load_sweep
from candle.store import RunStore
from candle.supervisor.run import run_meta
from tests.conftest import write

SWEEP = """
name: s
benchmark: "m:f"
search:
  method: grid
  space: {{a: [1, 2, 3]}}
  metric: acc
  direction: {direction}
cv: {{folds: 3}}
"""

VALUES = {1: [0.5, 0.6, 0.7], 2: [0.9, 0.8, 0.85], 3: [0.1, 0.2, float("nan")]}


def make_store(tmp_path: Path, direction: str) -> RunStore:
    sweep = load_sweep(write(tmp_path / "s.yaml", SWEEP.format(direction=direction)))
    store = RunStore(sweep.run_dir)
    jobs = list(iter_jobs(sweep))
    store.initialise(sweep.text, run_meta(sweep), jobs)
    for job in jobs:
        value = VALUES[job.point_params["a"]][job.fold or 0]
        if job.point_params["a"] == 1 and job.fold == 2:
            continue  # still pending
        store.write_result(job.id, {"status": "done", "metrics": {"acc": value}})
    return store


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_ranked_mean_std(tmp_path: Path, direction: str) -> None:
    summary = summarise(make_store(tmp_path, direction))
    rows = {r.params["a"]: r for r in summary.rows}
    assert rows[2].mean == pytest.approx(statistics.mean([0.9, 0.8, 0.85]))
    assert rows[2].std == pytest.approx(statistics.stdev([0.9, 0.8, 0.85]))
    assert rows[1].n == 2 and rows[1].pending == 1
    assert rows[1].mean == pytest.approx(0.55)
    assert rows[3].n == 2 and rows[3].failed == 1  # a NaN metric is not a result
    order = [r.params["a"] for r in summary.rows]
    assert order == ([2, 1, 3] if direction == "maximize" else [3, 1, 2])
    assert [r.best for r in summary.rows] == [True, False, False]


def test_json_and_csv_outputs(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    store = make_store(tmp_path, "maximize")
    result = cli("summary", str(store.root), "--format", "json", "--top", "2")
    rows = json.loads(result.out)
    assert [r["params"]["a"] for r in rows] == [2, 1]
    assert set(rows[0]) == {"point", "params", "metric", "mean", "std", "n", "failed",
                            "pending", "best", "folds"}  # a CV run: the metric per fold
    assert rows[0]["folds"] == [0.9, 0.8, 0.85]
    assert rows[1]["folds"][2] is None  # still pending
    parsed = list(csv.DictReader(io.StringIO(summary_csv(summarise(store)))))
    assert [r["a"] for r in parsed] == ["2", "1", "3"]
    assert float(parsed[0]["mean"]) == pytest.approx(0.85)


def test_summary_of_a_non_run_directory_is_a_user_error(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("summary", str(tmp_path))
    assert result.code == 2
    expected = f"{tmp_path}: not a candle run directory (no plan.jsonl / run.json)"
    assert result.err.strip() == expected
