"""Disk full and read-only filesystems: a write that cannot happen raises a clean OSError,
the previous version of the file stays whole, no temp file is left, and `candle` says so in
one line (exit 1) instead of a traceback. A real tmpfs of 1 MiB is mounted (root is needed
for that: CI runs as root); the fault-injection test runs everywhere."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from candle.store import atomic
from candle.store.atomic import atomic_write_json, read_json
from tests.conftest import ROOT, candle_cmd, write

pytestmark = pytest.mark.slow

MODEL = "def objective(params):\n    return {'val_loss': params['x'] ** 2}\n"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; test_a_failed_write_* covers the logic")
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    with (directory / "filler").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(candle_cmd(*args), capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_full_then_read_only_filesystem(small_fs: Path, tmp_path: Path) -> None:
    write(tmp_path / "model.py", MODEL)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({
        "name": "full", "benchmark": "model:objective",
        "search": {"method": "list", "points": [{"x": 0.1}, {"x": 0.2}], "metric": "val_loss"},
        "resources": {"scheduler": "local", "max_concurrent": 1}, "store": str(small_fs)}))
    assert run("run", str(sweep)).returncode == 0
    run_dir = small_fs / "full"
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    fill(small_fs)
    with pytest.raises(OSError) as info:
        atomic_write_json(run_dir / "run.json", {"x": "y" * 100_000})
    assert info.value.errno == errno.ENOSPC
    proc = run("run", str(sweep))  # rewrites the plan and run.json: the disk says no
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "No space left on device" in line and str(small_fs) in line
    assert "Traceback" not in proc.stderr
    summary = run("summary", str(run_dir), "--format", "json")
    assert summary.returncode == 0, summary.stderr
    assert sorted(round(p["mean"], 6) for p in json.loads(summary.stdout)) == [
        0.01, 0.04]
    (small_fs / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    with pytest.raises(OSError) as info:
        atomic_write_json(run_dir / "run.json", {"x": 1})
    assert info.value.errno == errno.EROFS
    proc = run("run", str(sweep))
    assert proc.returncode == 1 and "Read-only file system" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    changed = {p for p in before if after.get(p) != before[p]} - {run_dir / ".supervisor.lock"}
    assert not changed, changed  # nothing already written was damaged
    assert not [p for p in after if p.name.endswith(".tmp")]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "result.json"
    atomic_write_json(target, {"status": "done", "v": 1})

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic_write_json(target, {"status": "done", "v": 2})
    monkeypatch.undo()
    assert read_json(target) == {"status": "done", "v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
