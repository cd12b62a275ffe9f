"""Data staging to node-local storage (issue 18): jobs read the parsed .npy cache from a copy
made once per node under $CANDLE_LOCAL_SCRATCH/candle-stage/, or from the shared copy (one
warning) where no scratch is set or it cannot be used."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle_benchmarks import cache
from candle_benchmarks.nt3.data import load_csv_pair
from tests.benchmarks.test_cache import write_csv

FILES = ("nt_train2.csv", "nt_test2.csv")


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder whose parse cache exists (the first job parsed it), no scratch set."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CANDLE_LOCAL_SCRATCH", raising=False)
    monkeypatch.setattr(cache, "_warned", set())
    data = tmp_path / "shared"
    data.mkdir()
    write_csv(data / FILES[0], 40, 30, seed=1)
    write_csv(data / FILES[1], 12, 30, seed=2)
    load_csv_pair(data, *FILES)
    return data


def _where(arrays: tuple[Any, ...]) -> set[Path]:
    return {Path(a.filename).parent for a in arrays}


def test_a_job_reads_identical_arrays_from_the_staged_copy(shared: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from_shared = load_csv_pair(shared, *FILES)
    assert _where(from_shared) == {shared / ".candle-cache"}
    node = tmp_path / "node-tmp"
    node.mkdir()
    monkeypatch.setenv("NODE_TMP", str(node))
    monkeypatch.setenv("CANDLE_LOCAL_SCRATCH", "$NODE_TMP/candle")  # expanded in the job
    (node / "candle").mkdir()
    staged = load_csv_pair(shared, *FILES)
    stage = node / "candle" / "candle-stage"
    assert all(p.parent == stage for p in _where(staged))
    assert len(_where(staged)) == 2  # one folder per parsed file
    for a, b in zip(from_shared, staged, strict=True):
        assert isinstance(b, np.memmap) and a.dtype == b.dtype and np.array_equal(a, b)
    assert not [p for p in stage.iterdir() if p.name.startswith(".")]  # no temp left


def _stage_job(data: str, counter: str, ready: Any, index: int) -> None:
    """One job on the node: counts its copies in ``counter``, and copies only once both jobs
    have started staging (so the second really arrives while the first holds the lock)."""
    real = cache._copy

    def counted(source: Path, target: Path) -> None:
        for event in ready:
            assert event.wait(60), "the other job never started"
        with open(counter, "a") as handle:
            handle.write(f"{index} {source.name}\n")
        real(source, target)

    cache._copy = counted
    ready[index].set()
    arrays = load_csv_pair(Path(data), *FILES)
    expected = np.load(Path(data) / "expected.npz")
    for name, array in zip(("x_train", "y_train", "x_test", "y_test"), arrays, strict=True):
        assert isinstance(array, np.memmap) and "candle-stage" in str(array.filename)
        assert np.array_equal(array, expected[name]), name


def test_two_jobs_staging_the_same_data_at_once_both_succeed_and_copy_once(
        shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x_train, y_train, x_test, y_test = load_csv_pair(shared, *FILES)
    np.savez(shared / "expected.npz", x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("CANDLE_LOCAL_SCRATCH", str(scratch))
    counter = tmp_path / "copies"
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, like a job
    ready = [context.Event(), context.Event()]
    jobs = [context.Process(target=_stage_job, args=(str(shared), str(counter), ready, i))
            for i in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(120)
    assert [job.exitcode for job in jobs] == [0, 0]
    copies = counter.read_text().splitlines()
    names = sorted(line.split()[1] for line in copies)
    assert len(names) == 4 and len(set(names)) == 4, copies  # x and y of 2 files, once each
    stage = scratch / "candle-stage"
    assert sorted(p.suffix for p in stage.iterdir()) == ["", "", ".lock", ".lock"]


def test_no_scratch_set_reads_the_shared_copy(shared: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    assert _where(load_csv_pair(shared, *FILES)) == {shared / ".candle-cache"}
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("case", ["missing", "not a folder", "unset variable", "full"])
def test_an_unusable_scratch_warns_once_and_reads_the_shared_copy(
        shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], case: str) -> None:
    scratch = tmp_path / "scratch"
    setting = str(scratch)
    if case == "not a folder":
        scratch.write_text("a file")
    elif case == "unset variable":
        monkeypatch.delenv("NO_SUCH_SCRATCH", raising=False)
        setting = "$NO_SUCH_SCRATCH/x"
    elif case == "full":
        scratch.mkdir()
        monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(
            1 << 30, 1 << 30, 1 << 10))
    monkeypatch.setenv("CANDLE_LOCAL_SCRATCH", setting)
    arrays = load_csv_pair(shared, *FILES)
    assert _where(arrays) == {shared / ".candle-cache"}
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "local_scratch" in lines[0] and "shared filesystem" in lines[0]
    if case == "full":
        assert "needed" in lines[0]
        assert {p.suffix for p in (scratch / "candle-stage").iterdir()} == {".lock"}


def test_a_stale_temp_copy_is_cleared_and_a_damaged_copy_made_again(
        shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("CANDLE_LOCAL_SCRATCH", str(scratch))
    x, *_ = load_csv_pair(shared, *FILES)
    folder = Path(x.filename).parent
    (folder.parent / f".{folder.name}.dead").mkdir()  # a copier killed mid-copy
    Path(x.filename).write_bytes(b"truncated")
    del x
    again, *_ = load_csv_pair(shared, *FILES)
    assert Path(again.filename).parent == folder and again.shape == (40, 30)
    assert not list(folder.parent.glob(f".{folder.name}.*"))
