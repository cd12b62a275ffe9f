"""Benchmark: `candle predict` on full-width NT3 files (60,483 features) — samples/s and
peak memory against the file's size.

    python scripts/perf/predict_throughput.py [--rows 1000 3000] [--chunk-rows 64 256]
        [--batch-rows 16 32] [--cols 60483] [--dir /tmp/candle-perf-predict]

Writes (once) small upstream-layout training files (nt_train2.csv / nt_test2.csv: the
scaling a prediction reuses comes from them), a model directory holding one untrained
full-width NT3 model (conv 16,20,1,16,10,1, pool 1,10, dense 32,8: 3.1 M weights; its
speed is what matters, not its accuracy) and unlabelled prediction files of each --rows
size (bigger than a chunk). Each measurement runs in a fresh process so the peak RSS is its
own: the process's peak after loading the model and the training scaling, then its peak
after streaming the whole file through the predict engine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from candle.predict.engine import BATCH, CHUNK_ROWS  # noqa: E402

MODEL = {"conv": [16, 20, 1, 16, 10, 1], "pool": [1, 10], "dense": [32, 8], "dropout": 0.1}
WRITE_BLOCK = 50


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_rows(path: Path, rows: int, cols: int, seed: int, labelled: bool) -> None:
    """NT3-like log-expression values, 4 decimals, written WRITE_BLOCK rows at a time."""
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        for start in range(0, rows, WRITE_BLOCK):
            n = min(WRITE_BLOCK, rows - start)
            x = np.log2(1 + np.exp(rng.normal(0, 2, (n, cols)))).astype(np.float32)
            if labelled:
                x = np.column_stack([rng.integers(0, 2, n), x])
            np.savetxt(handle, x, delimiter=",", fmt="%.4f")
    tmp.rename(path)


def prepare(directory: Path, cols: int, rows: list[int]) -> Path:
    """Training files, the model directory and the prediction files (skipped if present)."""
    from candle.benchmark import get_benchmark
    from candle.store.model_card import CardMember, ModelCard

    data_dir = directory / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, seed in (("nt_train2.csv", 1), ("nt_test2.csv", 2)):
        if not (data_dir / name).exists():
            write_rows(data_dir / name, 40, cols, seed, labelled=True)
    model_dir = directory / "model"
    if not (model_dir / "model.json").exists():
        from candle_benchmarks.nt3.train import build

        params = {**get_benchmark("nt3").defaults(), **MODEL, "features": cols,
                  "data": str(data_dir)}
        model_dir.mkdir(parents=True, exist_ok=True)
        model = build(params, cols)
        model.save(model_dir / "member0.keras")
        print(f"model: {model.count_params():,} weights")
        ModelCard("nt3", params, (CardMember("untrained", 0, 0, "member0.keras"),), {}, {},
                  str(ROOT)).write(model_dir)
    for n in rows:
        path = directory / f"new-{n}.csv"
        if not path.exists():
            start = time.perf_counter()
            write_rows(path, n, cols, 100 + n, labelled=False)
            print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return model_dir


def measure(model_dir: Path, data: Path, out: Path, chunk_rows: int, batch_rows: int) -> None:
    """One fresh process: load, then stream; prints a JSON line."""
    from candle.predict.engine import load_members, predict_file
    from candle.predict.source import resolve_source

    base = peak_mib()
    source = resolve_source(model_dir)
    started = time.perf_counter()
    models = load_members(source)
    loaded = peak_mib()
    report = predict_file(source, data, out, chunk_rows=chunk_rows, batch_rows=batch_rows,
                          models=models)
    total = time.perf_counter() - started
    print(json.dumps({"rows": report.rows, "stream_s": report.seconds, "total_s": total,
                      "samples_per_s": report.samples_per_second, "base_mib": base,
                      "loaded_mib": loaded, "peak_mib": peak_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--cols", type=int, default=60483)
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[CHUNK_ROWS])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/candle-perf-predict"))
    parser.add_argument("--batch-rows", type=int, nargs="+", default=[BATCH])
    parser.add_argument("--measure", nargs=5, metavar=("MODEL", "DATA", "OUT", "CHUNK", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        model, data, out, chunk, batch = args.measure
        measure(Path(model), Path(data), Path(out), int(chunk), int(batch))
        return
    model_dir = prepare(args.dir, args.cols, args.rows)
    print(f"{'rows':>6} {'file MB':>8} {'chunk':>6} {'batch':>6} {'samples/s':>10} {'stream s':>9} "
          f"{'peak RSS MiB':>13} {'after load':>11} {'stream growth':>14}")
    for n in args.rows:
        data = args.dir / f"new-{n}.csv"
        for chunk, batch in itertools.product(args.chunk_rows, args.batch_rows):
            proc = subprocess.run(
                [sys.executable, __file__, "--measure", str(model_dir), str(data),
                 str(args.dir / "predictions.csv"), str(chunk), str(batch)],
                capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(proc.stderr)
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{got['rows']:>6} {data.stat().st_size / 1e6:>8.0f} {chunk:>6} {batch:>6} "
                  f"{got['samples_per_s']:>10.1f} {got['stream_s']:>9.1f} "
                  f"{got['peak_mib']:>13.0f} {got['loaded_mib']:>11.0f} "
                  f"{got['peak_mib'] - got['loaded_mib']:>+14.0f}", flush=True)


if __name__ == "__main__":
    main()
