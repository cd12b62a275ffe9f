"""`candle summary` keeps its result while nothing it was made from changes (issue 18):
an unchanged run is summarised from index/summary.json; a new result, a new plan or
another metric makes a new one; it always equals the summary computed afresh."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from candle.reporting import summarise
from candle.reporting.summary import Summary
from candle.reporting.summary_cache import summarise_cached
from candle.store.run_store import RunStore
from tests.store.test_results_index import JOBS, job_id, make_run, opened


def rows(summary: Summary) -> list[dict[str, object]]:
    return [r.to_dict(summary.metric) for r in summary.rows]


def fresh(root: Path) -> Summary:
    return summarise(RunStore(root), RunStore(root).results())


def test_an_unchanged_run_is_summarised_from_the_kept_summary(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", JOBS, pending=5, spread=True)
    first = summarise_cached(RunStore(run.root))
    assert (run.root / "index" / "summary.json").is_file()
    paths = opened(lambda: summarise_cached(RunStore(run.root)), run.root)
    assert [p for p in paths if "/index/results-" in p or p.endswith("result.json")] == []
    again = summarise_cached(RunStore(run.root))
    assert rows(again) == rows(first) == rows(fresh(run.root))
    assert again.rows[0].best and again.rows[0].point == 0


def test_a_new_result_makes_a_new_summary(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", JOBS, pending=5, spread=True)
    before = summarise_cached(RunStore(run.root))
    new = next(j for j in run.jobs() if j.id == job_id(JOBS, spread=True))
    run.write_params(new)
    run.write_result(new.id, {"status": "done", "metrics": {"val_loss": -1.0}})
    after = summarise_cached(RunStore(run.root))
    assert rows(after) != rows(before)
    assert after.rows[0].point == new.point and rows(after) == rows(fresh(run.root))
    # a damaged or missing cache is made again, equal
    (run.root / "index" / "summary.json").write_text("{")
    assert rows(summarise_cached(RunStore(run.root))) == rows(after)
    json.loads((run.root / "index" / "summary.json").read_text())
    shutil.rmtree(run.root / "index")
    assert rows(summarise_cached(RunStore(run.root))) == rows(after)
