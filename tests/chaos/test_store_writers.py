"""The store under load: 64 processes write their jobs' results over and over (as the rank
0s of 64 jobs do) while a reader reads them, and the summary, as `candle summary` does.
A reader must never see a torn or mixed file; the last write of each job must win; no temp
file may be left behind."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from candle.store.atomic import read_json
from candle.store.run_store import RunStore

pytestmark = pytest.mark.slow

WRITERS = 64
WRITES = 40
PAD = 4096  # big enough that a torn write would show (several pages)


def record(writer: int, step: int) -> dict[str, Any]:
    return {"job_id": f"job{writer:02d}", "status": "done", "step": step,
            "metrics": {"val_loss": writer + step / 1000},
            "pad": f"{writer:02d}" * (PAD // 2)}


def writer(root: str, index: int, start: Any) -> None:
    store = RunStore(Path(root))
    start.wait()
    for step in range(1, WRITES + 1):
        store.write_result(f"job{index:02d}", record(index, step))


def reader(root: str, stop: Any, out: Any) -> None:
    """Read every job's result as fast as possible; count reads and anything not whole."""
    jobs = Path(root) / "jobs"
    reads = bad = 0
    last: dict[str, int] = {}
    while not stop.is_set():
        for path in jobs.glob("job*/result.json"):
            try:
                data = read_json(path)
            except FileNotFoundError:
                continue
            except ValueError:
                bad += 1
                continue
            reads += 1
            index = int(data["job_id"][3:])
            if data != record(index, data["step"]) or data["step"] < last.get(data["job_id"], 0):
                bad += 1  # mixed with another writer's bytes, or a step went backwards
            last[data["job_id"]] = data["step"]
    out.put((reads, bad))


def test_64_concurrent_writers_a_reader_never_sees_a_torn_file(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    for index in range(WRITERS):
        (tmp_path / "jobs" / f"job{index:02d}").mkdir(parents=True)
    read_proc = ctx.Process(target=reader, args=(str(tmp_path), stop, out))
    read_proc.start()
    procs = [ctx.Process(target=writer, args=(str(tmp_path), i, start))
             for i in range(WRITERS)]
    for proc in procs:
        proc.start()
    started = time.perf_counter()
    start.set()
    for proc in procs:
        proc.join(timeout=300)
        assert proc.exitcode == 0
    elapsed = time.perf_counter() - started
    stop.set()
    reads, bad = out.get(timeout=60)
    read_proc.join(timeout=60)
    print(f"{WRITERS} writers x {WRITES} writes in {elapsed:.1f} s; {reads} reads, {bad} bad")
    assert bad == 0
    assert reads > WRITERS  # the reader really raced the writers
    store = RunStore(tmp_path)
    for index in range(WRITERS):  # the last write won, whole
        assert store.result(f"job{index:02d}") == record(index, WRITES)
    assert not list(tmp_path.rglob("*.tmp"))
