"""Atomic writes: readers see old or new content, never a torn file; no temp files left."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from candle.store import atomic_write_json, read_json


def _writer(path: str, worker: int, rounds: int) -> None:
    for i in range(rounds):
        atomic_write_json(Path(path), {"worker": worker, "i": i, "pad": "x" * 20000})


def test_concurrent_writers_and_reader_never_see_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    atomic_write_json(target, {"worker": -1, "i": 0, "pad": ""})
    procs = [multiprocessing.Process(target=_writer, args=(str(target), w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs):
        data = json.loads(target.read_text())  # raises on a torn file
        assert set(data) == {"worker", "i", "pad"}
        reads += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert reads > 0
    assert read_json(target)["i"] == 59
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()} if False else {1j: 2})  # non-str key
    assert read_json(target) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
