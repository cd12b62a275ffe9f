"""Benchmark: loading an NT3-shaped CSV (1,400 x 60,484 by default) three ways.

    python scripts/perf/csv_load.py [--rows 1400] [--cols 60483] [--dir /tmp/candle-perf]

1. upstream's path: pandas.read_csv(header=None) then .values as float32
2. candle's parser: pyarrow.csv into float32 (candle_benchmarks.io.read_labelled_csv)
   (alone, then with the cache write that a first load in a job does)
3. candle's second load: the cached .npy files, memory-mapped (and every value touched)
Prints seconds and peak RSS growth for each; writes nothing but the CSV and its cache.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from candle_benchmarks.cache import cached_arrays
from candle_benchmarks.io import read_labelled_csv


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_csv(path: Path, rows: int, cols: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    x = np.log2(1 + np.exp(rng.normal(0, 2, (rows, cols)))).astype(np.float32)
    y = rng.integers(1, 3, rows)
    table = pa.table([pa.array(y), *(pa.array(x[:, j]) for j in range(cols))],
                     names=[f"c{j}" for j in range(cols + 1)])
    pacsv.write_csv(table, path, pacsv.WriteOptions(include_header=False))


def timed(label: str, fn) -> np.ndarray:  # type: ignore[no-untyped-def]
    before = peak_mib()
    start = time.perf_counter()
    x = fn()
    checksum = float(np.asarray(x, dtype=np.float64).sum())
    elapsed = time.perf_counter() - start
    print(f"{label:<44} {elapsed:7.2f} s   peak RSS +{peak_mib() - before:7.0f} MiB   "
          f"sum={checksum:.6g}", flush=True)
    return x  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1400)
    parser.add_argument("--cols", type=int, default=60483)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/candle-perf"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / "nt_train2.csv"
    shutil.rmtree(args.dir / ".candle-cache", ignore_errors=True)
    if not path.exists():
        start = time.perf_counter()
        make_csv(path, args.rows, args.cols)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - start:.1f} s")
    print(f"{args.rows} x {args.cols + 1} CSV, {path.stat().st_size / 1e6:.0f} MB")

    def pandas_path() -> np.ndarray:
        import pandas as pd

        frame = pd.read_csv(path, header=None, low_memory=False)
        return frame.values[:, 1:].astype(np.float32)

    timed("pandas.read_csv (upstream)", pandas_path)
    timed("pyarrow.csv float32 (candle parser only)", lambda: read_labelled_csv(path)[0])
    timed("pyarrow.csv float32 + write cache (1st load)",
          lambda: cached_arrays(path, read_labelled_csv, ("x", "y"))[0])
    timed("cached .npy memory-map (candle, next loads)",
          lambda: cached_arrays(path, read_labelled_csv, ("x", "y"))[0])


if __name__ == "__main__":
    main()
