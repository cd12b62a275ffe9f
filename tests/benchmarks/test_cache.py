"""The parsed-array cache: second load is a memory-map; edits invalidate; no cache dir is OK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from candle_benchmarks import cache
from candle_benchmarks.io import read_labelled_csv
from candle_benchmarks.nt3.data import load_csv_pair


def write_csv(path: Path, rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = np.column_stack([rng.integers(0, 2, rows), rng.random((rows, cols))])
    np.savetxt(path, data, delimiter=",", fmt=["%d"] + ["%.6f"] * cols)
    return data


def test_second_load_is_a_memory_map_with_the_same_values(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "nt_train2.csv"
    data = write_csv(path, 30, 50, seed=1)
    calls = []

    def parse(p: Path):  # type: ignore[no-untyped-def]
        calls.append(p)
        return read_labelled_csv(p)

    x1, y1 = cache.cached_arrays(path, parse, ("x", "y"))
    x2, y2 = cache.cached_arrays(path, parse, ("x", "y"))
    assert len(calls) == 1
    assert isinstance(x2, np.memmap) and isinstance(y2, np.memmap)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.allclose(x2, data[:, 1:], atol=1e-6)
    assert len(list((tmp_path / ".candle-cache").glob("*.npy"))) == 2

    write_csv(path, 30, 50, seed=2)  # the file changes: parse again, drop the stale cache
    x3, _ = cache.cached_arrays(path, parse, ("x", "y"))
    assert len(calls) == 2 and not np.array_equal(x3, x1)
    assert len(list((tmp_path / ".candle-cache").glob("*.npy"))) == 2


def test_unwritable_data_dir_falls_back_to_the_user_cache(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    (data_dir / ".candle-cache").write_text("not a directory")  # mkdir there fails
    write_csv(data_dir / "nt_train2.csv", 10, 20, seed=1)
    write_csv(data_dir / "nt_test2.csv", 5, 20, seed=2)
    x_train, *_ = load_csv_pair(data_dir, "nt_train2.csv", "nt_test2.csv")
    again, *_ = load_csv_pair(data_dir, "nt_train2.csv", "nt_test2.csv")
    assert isinstance(again, np.memmap) and np.array_equal(x_train, again)
    assert len(list((tmp_path / "xdg" / "candle" / "data").rglob("*.npy"))) == 4
