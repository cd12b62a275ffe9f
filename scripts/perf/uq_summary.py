"""Benchmark: what UQ predictions cost on disk and how fast `candle summary` combines them.

    python scripts/perf/uq_summary.py [--points 100] [--replicas 10] [--samples 1000]
                                      [--passes 20]

Writes a run directory of points x replicas finished jobs, each with a classification
predictions.npz of --samples test samples x 2 classes and --passes MC-dropout passes
(what an NT3 mc_dropout job saves), then times `summarise_uq` (read every file, combine
each point's members, ECE/entropy/accuracy) and reports bytes per job and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from candle.plan.jobs import Job  # noqa: E402
from candle.spec.model import Resources  # noqa: E402
from candle.store.manifest import RunManifest  # noqa: E402
from candle.store.run_store import RunStore  # noqa: E402
from candle.uq import predictions, summarise_uq  # noqa: E402


def build(root: Path, points: int, replicas: int, samples: int, passes: int) -> RunStore:
    rng = np.random.default_rng(0)
    jobs = [Job(f"{p:06d}{r:06d}", p, {"x": p}, {"x": p}, None, None, r, r)
            for p in range(points) for r in range(replicas)]
    store = RunStore(root)
    store.initialise("", RunManifest(
        name="uq-bench", benchmark="nt3", metric="val_loss", method="grid", base_dir=root,
        source=root / "sweep.yaml", resources=Resources("local", 1, 0, "00:00:00", 1),
        replicas=replicas, uq={"method": "mc_dropout", "replicas": replicas,
                               "samples": passes}), jobs)
    labels = rng.integers(0, 2, samples)
    for job in jobs:
        logits = rng.normal(size=(passes, samples, 2)) + np.eye(2)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
        predictions.save(store.job_dir(job.id), predictions.Predictions(
            "classification", labels, probs.mean(axis=0), samples=probs))
        store.write_result(job.id, {"status": "done", "metrics": {"val_loss": 0.5}})
    return store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        store = build(Path(tmp) / "run", args.points, args.replicas, args.samples, args.passes)
        written = time.perf_counter() - started
        sizes = [p.stat().st_size for p in (store.root / "jobs").glob("*/predictions.npz")]
        started = time.perf_counter()
        rows = summarise_uq(store)
        elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    jobs = args.points * args.replicas
    print(f"{jobs} jobs ({args.points} points x {args.replicas} replicas), "
          f"{args.samples} samples x {args.passes} passes x 2 classes each")
    print(f"predictions.npz: {np.mean(sizes) / 1024:.0f} KiB per job, "
          f"{sum(sizes) / 2**20:.0f} MiB in all (written in {written:.1f} s)")
    print(f"summarise_uq: {elapsed:.2f} s for {len(rows)} points "
          f"({elapsed / jobs * 1000:.1f} ms per job); peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
