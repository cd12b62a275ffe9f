"""Benchmark: loading an NT3-shaped CSV (1,400 x 60,484 by default), each way in a fresh
process (so every peak RSS is that way's own).

    python scripts/perf/csv_load.py [--rows 1400] [--cols 60483] [--dir /tmp/candle-perf]
                                    [--scratch /dev/shm/candle-perf] [--repeat 1]

1. upstream's path: pandas.read_csv(header=None) then .values as float32
2. issue 3's reader: pyarrow.csv with every column declared float32 (kept as the fallback
   for files the block parser declines: candle_benchmarks.io._read_labelled_table)
3. the block path without the compiled parser: separators found by numpy, values cast by
   pyarrow on a few threads (what a machine without a C compiler at install time runs)
4. candle's parser (issue 18): the same blocks parsed in one pass by the compiled
   _fastcsv, straight into the features matrix (candle_benchmarks.io.read_labelled_csv)
5. a job's first load: 4 + writing the .candle-cache/*.npy files beside the data
6. later loads: the cached .npy files memory-mapped from the data's filesystem
7. the first job on a node with local_scratch: stage the .npy files there, memory-map them
8. the other jobs on that node: memory-map the staged copy
Every loaded value is summed. Prints seconds, the process's peak RSS and its growth over
the RSS after imports; writes nothing but the CSV, its cache and the staged copy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

STEPS = {
    "pandas": "pandas.read_csv(header=None) -> float32 (upstream)",
    "table": "pyarrow.csv, 60,484 float32 columns (issue 3)",
    "arrow": "line blocks + pyarrow cast (no compiled parser)",
    "blocks": "read_labelled_csv: line blocks + _fastcsv (issue 18)",
    "first": "read_labelled_csv + write .npy cache (1st load)",
    "cached": "cached .npy memory-map, shared copy",
    "stage": "stage .npy to local_scratch + memory-map (1st on node)",
    "staged": "staged .npy memory-map (next jobs on node)",
}


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


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


def run_step(step: str, path: Path) -> dict[str, float]:
    """One way of loading, in this (fresh) process."""
    import pandas as pd  # every step imports the same modules: the same baseline RSS
    import pyarrow.compute
    import pyarrow.csv  # noqa: F401

    from candle_benchmarks import io
    from candle_benchmarks.cache import cached_arrays

    def pandas_path() -> np.ndarray:
        frame = pd.read_csv(path, header=None, low_memory=False)
        return frame.values[:, 1:].astype(np.float32)  # type: ignore[no-any-return]

    ways = {
        "pandas": pandas_path,
        "table": lambda: io._read_labelled_table(path)[0],
        "blocks": lambda: io.read_labelled_csv(path)[0],
    }
    if step == "arrow":
        io._fastcsv = None
        ways["arrow"] = ways["blocks"]
    for name in ("first", "cached", "stage", "staged"):
        ways[name] = lambda: cached_arrays(path, io.read_labelled_csv, ("x", "y"))[0]
    base = rss_mib()
    start = time.perf_counter()
    x = ways[step]()
    checksum = sum(float(x[i : i + 64].sum(dtype=np.float64)) for i in range(0, len(x), 64))
    elapsed = time.perf_counter() - start
    where = str(getattr(x, "filename", "") or "memory")
    return {"seconds": elapsed, "peak": peak_mib(), "growth": peak_mib() - base,
            "sum": checksum, "where": where}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1400)
    parser.add_argument("--cols", type=int, default=60483)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/candle-perf"))
    parser.add_argument("--scratch", type=Path, default=Path("/dev/shm/candle-perf"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step
    args = parser.parse_args()
    path = args.dir / "nt_train2.csv"
    if args.step:
        print(json.dumps(run_step(args.step, path)))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        start = time.perf_counter()
        make_csv(path, args.rows, args.cols)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - start:.1f} s")
    print(f"{path}: {path.stat().st_size / 1e6:.0f} MB; {os.cpu_count()} CPUs")
    env = {k: v for k, v in os.environ.items() if k != "CANDLE_LOCAL_SCRATCH"}
    for step in args.steps.split(","):
        for _ in range(args.repeat):
            if step == "first":
                shutil.rmtree(args.dir / ".candle-cache", ignore_errors=True)
            if step == "stage":
                shutil.rmtree(args.scratch, ignore_errors=True)
                args.scratch.mkdir(parents=True)
            step_env = env if step not in ("stage", "staged") else {
                **env, "CANDLE_LOCAL_SCRATCH": str(args.scratch)}
            out = subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--step",
                                  step], env=step_env, check=True, capture_output=True,
                                 text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            where = f"  {Path(r['where']).parent}" if step in ("stage", "staged") else ""
            print(f"{STEPS[step]:<56} {r['seconds']:7.2f} s   peak RSS {r['peak']:6.0f} MiB "
                  f"(+{r['growth']:5.0f})   sum={r['sum']:.6g}{where}", flush=True)
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
