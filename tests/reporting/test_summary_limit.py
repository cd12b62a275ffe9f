"""`candle summary`'s table shows the best SUMMARY_ROWS points and says how to get all
(issue 18: drawing 20,000 rows took rich a minute)."""

from __future__ import annotations

from pathlib import Path

import pytest

from candle.reporting import summarise
from candle.reporting.render import SUMMARY_ROWS, print_summary
from tests.store.test_results_index import make_run


def test_a_big_summary_table_shows_the_best_points(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    store = make_run(tmp_path / "run", 3 * (SUMMARY_ROWS + 5))
    summary = summarise(store)
    print_summary(summary)
    out = capsys.readouterr().out
    total = SUMMARY_ROWS + 5
    assert f"the best {SUMMARY_ROWS} of {total} points; all of them: --top {total}" in out
    print_summary(summary, limit=None)
    assert "the best" not in capsys.readouterr().out
    assert len(summary.rows) == total  # the summary itself is whole (csv, json)
