"""attempts.jsonl, the history of a job's earlier attempts, survives a supervisor killed in
the middle of appending to it (a torn last line)."""

from __future__ import annotations

import json
from pathlib import Path

from candle.store.run_store import ATTEMPTS, RunStore


def test_a_torn_attempt_line_is_cut_before_the_next_append(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    job_dir = store.job_dir("j1")
    job_dir.mkdir(parents=True)
    (job_dir / ATTEMPTS).write_text('{"attempt": 1, "status": "failed"}\n{"attempt": 2, "sta')
    assert store.previous_attempts("j1") == 1  # the torn line is not an attempt
    store.write_result("j1", {"attempt": 3, "status": "failed"})
    store.clear_result("j1")
    lines = (job_dir / ATTEMPTS).read_text().splitlines()
    assert [json.loads(line)["attempt"] for line in lines] == [1, 3]
    assert store.previous_attempts("j1") == 2 and store.result("j1") is None
    assert store.previous_attempts("never-ran") == 0
