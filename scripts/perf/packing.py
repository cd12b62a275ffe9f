"""Benchmark: how full a packed allocation stays, and 1-rank vs 2-rank NT3 throughput.

    python scripts/perf/packing.py [--jobs 12] [--epochs 3] [--workers warm,process]
                                   [--trivial 200] [--plot packing.png]

Part 1 runs a sweep of short NT3 jobs through the real supervisor on this machine (one
1-rank job per core), once per worker mode (resources.workers: warm, process), and
reports, over the sweep's wall time x slots:
  - training utilisation: time inside `model.fit` (rank-seconds) / slot-seconds;
  - job utilisation: time inside the job's Python code (data, model, fit, result);
the rest is process start-up (interpreter, TensorFlow import) and supervisor gaps.
The wall time counts from the first job's start to the last one's end: the run's own
start-up (reading the sweep, writing the run directory) is not the slots' to fill.
Part 1b (--trivial N) runs N jobs of a user model that returns at once, per worker mode,
and reports jobs per second on the machine's slots.
Part 2 trains the same NT3 job as 1 rank (all cores' threads) and as 2 Horovod ranks
(one thread each, same global batch) and reports samples per second of training.
Everything runs in a temporary directory; --plot draws the slot timeline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from candle.store.run_store import RunStore  # noqa: E402


def nt3_params(features: int, samples: int, epochs: int) -> dict[str, Any]:
    return {"data": "synthetic", "features": features, "samples": samples, "epochs": epochs,
            "conv": [16, 20, 1, 16, 10, 1], "dense": [32, 8], "optimizer": "adam",
            "learning_rate": 0.001, "ckpt_keep_limit": 1}


def run_sweep(work: Path, name: str, doc: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """`candle run` on ``doc`` as a separate process; (wall seconds, results)."""
    path = work / f"{name}.yaml"
    path.write_text(json.dumps({"name": name, "store": str(work / "runs"), "retries": 0,
                                **doc}))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "candle.cli", "run", str(path)], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{name}: candle run failed:\n{proc.stderr[-2000:]}")
    store = RunStore(work / "runs" / name)
    results = [store.result(job.id) or {} for job in store.jobs()]
    return wall, results


def utilisation(work: Path, jobs: int, epochs: int, workers: str, plot: Path | None) -> None:
    slots = os.cpu_count() or 1
    doc = {"benchmark": "nt3", "params": nt3_params(400, 400, epochs),
           "search": {"method": "random", "trials": jobs, "seed": 1, "metric": "val_loss",
                      "space": {"learning_rate": {"loguniform": [1e-4, 1e-2]}}},
           "resources": {"scheduler": "local", "ranks_per_job": 1, "workers": workers}}
    whole, results = run_sweep(work, f"packed-{workers}-{epochs}", doc)
    first = min(r["started"] for r in results)
    wall = max(r["ended"] for r in results) - first
    slot_seconds = slots * wall
    training = sum(r["ranks"] * r["train_seconds"] for r in results)
    inside = sum(r["ranks"] * r["duration_s"] for r in results)
    print(f"packed sweep, workers {workers}: {jobs} NT3 jobs x {epochs} epochs, 1 rank each, "
          f"{slots} slots, jobs' wall {wall:.1f} s (candle run {whole:.1f} s)")
    print(f"  training utilisation (fit time / slot time):  {training / slot_seconds:6.1%}"
          f"   (over the whole candle run, start-up included: "
          f"{training / (slots * whole):.1%})")
    print(f"  job utilisation (job code / slot time):       {inside / slot_seconds:6.1%}")
    mean_fit = training / len(results)
    mean_job = inside / len(results)
    startup = slot_seconds / len(results) - mean_job
    print(f"  per job: fit {mean_fit:.2f} s, rest of job code {mean_job - mean_fit:.2f} s, "
          f"outside job code (start-up, gaps) {startup:.2f} s")
    if plot is not None:
        draw_timeline(results, first, slots, plot)
        print(f"  timeline: {plot}")


TRIVIAL_MODEL = "def f(params):\n    return {'val_loss': float(params['x'])}\n"


def trivial(work: Path, jobs: int, workers: str) -> None:
    """Jobs that cost nothing: what the supervisor and the job's start-up cost alone."""
    (work / "trivial.py").write_text(TRIVIAL_MODEL)
    doc = {"benchmark": "trivial:f",
           "search": {"method": "grid", "space": {"x": list(range(jobs))},
                      "metric": "val_loss"},
           "resources": {"scheduler": "local", "ranks_per_job": 1, "workers": workers}}
    whole, results = run_sweep(work, f"trivial-{workers}", doc)
    first = min(r["started"] for r in results)
    wall = max(r["ended"] for r in results) - first
    print(f"trivial jobs, workers {workers}: {jobs} jobs on {os.cpu_count()} slots in "
          f"{wall:.1f} s: {jobs / wall:.1f} jobs/s (candle run {whole:.1f} s in all)")


def draw_timeline(results: list[dict[str, Any]], origin: float, slots: int,
                  out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes: list[float] = []  # when each drawn lane frees up
    fig, ax = plt.subplots(figsize=(9, 0.6 * slots + 1.5))
    for r in sorted(results, key=lambda r: r["started"]):
        start, end = r["started"] - origin, r["ended"] - origin
        lane = next((i for i, free in enumerate(lanes) if free <= start + 1e-3), len(lanes))
        if lane == len(lanes):
            lanes.append(0.0)
        lanes[lane] = end
        fit = r["train_seconds"]
        ax.barh(lane, end - start, left=start, color="#c7d7ee", edgecolor="#345")
        ax.barh(lane, fit, left=end - fit, color="#2a6fbb")
    ax.set_yticks(range(len(lanes)), [f"slot {i}" for i in range(len(lanes))])
    ax.set_xlabel("seconds since the first job started (dark: inside model.fit)")
    ax.set_title("packed allocation: job code per slot")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def throughput(work: Path, epochs: int, features: int) -> None:
    rows = []
    for ranks, batch in ((1, 20), (2, 10)):  # the same global batch of 20
        params = {**nt3_params(features, 800, epochs), "batch_size": batch,
                  "learning_rate": 0.001 / ranks}
        doc = {"benchmark": "nt3", "params": params,
               "search": {"method": "list", "points": [{}], "metric": "val_loss"},
               "resources": {"scheduler": "local", "ranks_per_job": ranks}}
        whole, (result,) = run_sweep(work, f"ranks{ranks}", doc)
        rate = result["train_samples"] * result["epochs_run"] / result["train_seconds"]
        rows.append((ranks, rate, result["train_seconds"], result["metrics"]["val_loss"],
                     whole - result["train_seconds"]))
    cores = os.cpu_count() or 1
    print(f"NT3 {features} features, 640 training samples x {epochs} epochs, "
          f"global batch 20, {cores} cores:")
    for ranks, rate, seconds, val_loss, outside in rows:
        print(f"  {ranks} rank(s) x {max(1, cores // ranks)} thread(s): {rate:8.1f} samples/s "
              f"(fit {seconds:.2f} s, val_loss {val_loss:.3f}; candle run outside the fit "
              f"{outside:.2f} s)")
    print(f"  2 ranks / 1 rank: {rows[1][1] / rows[0][1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--features", type=int, default=4000,
                        help="NT3 width for the throughput part")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--workers", default="warm,process",
                        help="worker modes to compare, in this order")
    parser.add_argument("--trivial", type=int, default=0,
                        help="also run this many trivial jobs per worker mode")
    parser.add_argument("--skip", choices=("utilisation", "throughput"), default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="candle-packing-") as tmp:
        work = Path(tmp)
        modes = args.workers.split(",")
        for workers in modes if args.trivial else ():
            trivial(work, args.trivial, workers)
        if args.skip != "utilisation":
            for workers in modes:
                utilisation(work, args.jobs, args.epochs, workers,
                            args.plot if workers == modes[0] else None)
        if args.skip != "throughput":
            throughput(work, max(args.epochs, 3), args.features)


if __name__ == "__main__":
    main()
