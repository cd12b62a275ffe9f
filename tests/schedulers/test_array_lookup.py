"""An array task finds its job in its chunk's records, not by parsing the whole plan.jsonl
(issue 18: N tasks each reading an N-line plan is O(N^2) in all)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from candle.plan.jobs import Job
from candle.schedulers.batch import inside
from candle.schedulers.batch.submit import batch_dir, chunk_records, plan_and_submit
from candle.schedulers.slurm import backend
from candle.spec import load_sweep
from candle.store import RunStore
from candle.supervisor.run import run_meta
from tests.conftest import write
from tests.schedulers.test_submit_waves import FakeSlurm

_OPENED: list[list[str]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED and event == "open" and isinstance(args[0], str | Path):
        _OPENED[-1].append(os.fspath(args[0]))


sys.addaudithook(_hook)


class FakeAllocation:
    CAN_REQUEUE = False

    def __init__(self, index: int) -> None:
        self.index = index

    def array_index(self) -> int:
        return self.index


def submitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunStore:
    fake = FakeSlurm()
    monkeypatch.setattr(backend, "submit", fake.submit)
    monkeypatch.setattr(backend, "status", fake.status)
    monkeypatch.setattr(backend, "cluster_limits", lambda: (11, 10000))
    monkeypatch.setattr(backend, "tagged_jobs", lambda: {})
    write(tmp_path / "model.py", "def objective(params):\n    return {'val_loss': 0.0}\n")
    doc = {"name": "arr", "benchmark": "model:objective",
           "search": {"method": "grid", "metric": "val_loss", "space": {"a": list(range(8))}},
           "cv": {"folds": 3},
           "resources": {"scheduler": "slurm", "mode": "array", "walltime": "00:30:00",
                         "site": str(Path(__file__).parents[2] / "configs" /
                                     "local-slurm.yaml")},
           "store": str(tmp_path / "runs")}
    path = tmp_path / "arr.yaml"
    path.write_text(json.dumps(doc))
    sweep = load_sweep(path)
    plan_and_submit(sweep, run_meta(sweep), dry_run=False)
    return RunStore(sweep.run_dir)


def test_an_array_task_reads_its_chunk_not_the_plan(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = submitted(tmp_path, monkeypatch)
    planned = {job.id: job for job in store.jobs()}
    chunk = "chunk-0001.txt"
    ids = (batch_dir(store) / chunk).read_text().split()
    records = (batch_dir(store) / chunk_records(chunk)).read_text().splitlines()
    assert [json.loads(line)["id"] for line in records] == ids  # line for line
    ran: list[list[Job]] = []

    def supervisor(store: RunStore, here: Any, *, array_task: bool) -> Any:
        return SimpleNamespace(run=lambda jobs: ran.append(list(jobs)) or SimpleNamespace(
            checkpointed=0, stopped_by=None, failed=0, timed_out=0))

    monkeypatch.setattr(inside, "_supervisor", supervisor)
    for index in (0, len(ids) - 1):
        monkeypatch.setattr(inside, "allocation_of", lambda s, i=index: FakeAllocation(i))
        _OPENED.append([])
        try:
            assert inside.array_task(store.root, chunk) == 0
        finally:
            opened = _OPENED.pop()
        assert not [p for p in opened if p.endswith("plan.jsonl")]
        assert ran[-1] == [planned[ids[index]]]


def test_a_chunk_from_before_still_finds_its_job_in_the_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = submitted(tmp_path, monkeypatch)
    chunk = "chunk-0000.txt"
    (batch_dir(store) / chunk_records(chunk)).unlink()
    ids = (batch_dir(store) / chunk).read_text().split()
    ran: list[list[Job]] = []
    monkeypatch.setattr(inside, "_supervisor", lambda store, here, array_task: SimpleNamespace(
        run=lambda jobs: ran.append(list(jobs)) or SimpleNamespace(
            checkpointed=0, stopped_by=None, failed=0, timed_out=0)))
    monkeypatch.setattr(inside, "allocation_of", lambda s: FakeAllocation(2))
    assert inside.array_task(store.root, chunk) == 0
    assert [job.id for job in ran[0]] == [ids[2]]
