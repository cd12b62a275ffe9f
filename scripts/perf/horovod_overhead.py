"""Benchmark: Horovod's own overhead, 2 ranks x 1 thread against 1 rank x 2 threads (issue 19).

    python scripts/perf/horovod_overhead.py [--repeats 3] [--epochs 8] [--features 4000]
        [--samples 1200] [--batch 20] [--variants 2x1,candle] [--detail]

NT3 on synthetic data, the same global batch (``--batch``; 2 ranks take half of it each)
and the same effective learning rate, trained the way candle trains a job: candle's
`LocalLauncher` builds the ``mpirun -np R --bind-to none ...`` command and its environment
(`openmpi_env`, the supervisor's job environment, OMP_NUM_THREADS = threads per rank), and
each rank runs the built-in benchmark's ``train`` through candle.job.runner.train_job
(`configure_tensorflow`: thread pools, hvd.init; `fit`: DistributedOptimizer, broadcast,
metric average) with a timing callback added. A 1-rank job is a plain process, as candle
starts it.

Two figures per run, both samples/s of the whole job (all ranks):
  steady  training batches only, epochs 2..N, the median epoch (the slower rank's time);
  fit     train_samples x epochs / the seconds model.fit took (the first epoch's tracing
          and broadcast, validation and the epoch-end callbacks included).
Every variant runs once per repeat, in turn (interleaved), so load from other work on the
machine hits all of them alike; ratios are to the 1x2 run of the same repeat.

Variants (``--variants``, comma-separated; 1x2 always runs):
  1x2     1 rank x 2 threads: the reference
  2x1     2 ranks x 1 thread, as candle launched them before issue 19 (Open MPI
          busy-polls while a rank waits in MPI)
  candle  2 ranks x 1 thread as candle's launcher launches them now
          (OMPI_MCA_mpi_yield_when_idle=1, see candle.launch._base.openmpi_env)
  and the experiments of `VARIANTS` (each: 2x1 plus only its own settings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# name: (ranks, threads per rank, extra environment). "candle" takes the launcher's
# flags and environment as they are; the others drop what issue 19 added (and any
# HOROVOD_* of this shell) and set only their own.
VARIANTS: dict[str, tuple[int, int, dict[str, str]]] = {
    "1x2": (1, 2, {}),
    "2x1": (2, 1, {}),
    "candle": (2, 1, {}),
    "cycle0.5": (2, 1, {"HOROVOD_CYCLE_TIME": "0.5"}),
    "cycle10": (2, 1, {"HOROVOD_CYCLE_TIME": "10"}),
    "yield+cycle0.2": (2, 1, {"OMPI_MCA_mpi_yield_when_idle": "1", "HOROVOD_CYCLE_TIME": "0.2"}),
    "yield+cycle5": (2, 1, {"OMPI_MCA_mpi_yield_when_idle": "1", "HOROVOD_CYCLE_TIME": "5"}),
    "yield+fusion0": (2, 1, {"OMPI_MCA_mpi_yield_when_idle": "1",
                             "HOROVOD_FUSION_THRESHOLD": "0"}),
}
ADDED = "OMPI_MCA_mpi_yield_when_idle"  # what candle's launcher adds since issue 19


def nt3_params(args: argparse.Namespace, ranks: int) -> dict[str, Any]:
    return {"data": "synthetic", "features": args.features, "samples": args.samples,
            "epochs": args.epochs, "conv": [16, 20, 1, 16, 10, 1], "dense": [32, 8],
            "optimizer": "adam", "learning_rate": 0.001 / ranks,  # x ranks under Horovod
            "batch_size": args.batch // ranks, "ckpt_every": "0", "ckpt_keep_limit": 1,
            "reduce_lr_patience": 0, "verbose": 0}


def worker(spec_file: str) -> None:
    """One rank: candle's NT3 train function with a timing callback."""
    from candle.api import TrainContext
    from candle.job.runner import mpi_rank_and_size, train_job

    spec = json.loads(Path(spec_file).read_text())
    rank, size = mpi_rank_and_size()
    stamps: dict[str, list[float]] = {"begin": [], "train_end": [], "epoch_end": []}

    import tensorflow as tf

    class Timer(tf.keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            stamps["begin"].append(time.perf_counter())

        def on_test_begin(self, logs: Any = None) -> None:  # the epoch's last batch is done
            stamps["train_end"].append(time.perf_counter())

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            stamps["epoch_end"].append(time.perf_counter())

    params = {**spec["params"], "_extra_callbacks": [Timer()]}
    job_dir = Path(spec["dir"]) / f"rank{rank}"
    job_dir.mkdir(parents=True, exist_ok=True)
    ctx = TrainContext(job_dir=job_dir, seed=1, rank=rank, size=size,
                       threads=int(spec["threads"]))
    result = train_job("nt3", params, ctx, ROOT)
    first = stamps["begin"][0]
    out = {"rank": rank, "train_samples": result["train_samples"],
           "epochs": result["epochs_run"], "train_seconds": result["train_seconds"],
           "val_loss": result["metrics"]["val_loss"],
           "stamps": {k: [x - first for x in v] for k, v in stamps.items()}}
    (Path(spec["dir"]) / f"out{rank}.json").write_text(json.dumps(out))


NAN = float("nan")


def launch(name: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Run one variant through candle's launcher: its steady and fit samples/s."""
    from candle.launch._base import LaunchRequest, job_argv
    from candle.launch.local import LocalLauncher
    from candle.supervisor.run import JOB_ENV, mpi_env

    ranks, threads, extra_env = VARIANTS[name]
    run = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    spec = run / "spec.json"
    spec.write_text(json.dumps({"params": nt3_params(args, ranks), "threads": threads,
                                "dir": str(run)}))
    request = LaunchRequest(run, "job", ranks, 1, threads, stop_grace=30.0)
    launcher = LocalLauncher()
    argv = launcher.argv(request)
    argv = argv[: len(argv) - len(job_argv(request))]  # mpirun and its flags (or nothing)
    argv += [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec)]
    # As the supervisor starts a job: its environment, then the launcher's defaults.
    env = {**os.environ, **JOB_ENV, **mpi_env(), "OMP_NUM_THREADS": str(threads)}
    env.update(launcher.env(request))
    if name != "candle":
        env = {k: v for k, v in env.items() if k != ADDED and not k.startswith("HOROVOD_")}
    env.update(extra_env)
    began = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        print(f"  {name}: {' '.join(argv)} failed (exit {proc.returncode}):\n"
              f"{proc.stderr[-1500:]}", file=sys.stderr)
        return {"steady": NAN, "fit": NAN, "fit_s": NAN, "wall": wall, "val_loss": NAN}
    outs = [json.loads((run / f"out{r}.json").read_text()) for r in range(ranks)]
    if args.detail:
        for out in outs:
            st = out["stamps"]
            print(f"    {name} rank {out['rank']}: epoch train s " + " ".join(
                f"{e - b:.2f}" for b, e in zip(st["begin"], st["train_end"], strict=True))
                + " | validation+callbacks s " + " ".join(f"{e - b:.2f}" for b, e in zip(
                    st["train_end"], st["epoch_end"], strict=True)), flush=True)
    # Per epoch the slower rank sets the pace; every rank's samples count.
    per_epoch = [max(o["stamps"]["train_end"][i] - o["stamps"]["begin"][i] for o in outs)
                 for i in range(1, len(outs[0]["stamps"]["begin"]))]
    samples = outs[0]["train_samples"]
    fit_s = max(o["train_seconds"] for o in outs)
    return {"steady": samples / statistics.median(per_epoch),
            "fit": samples * outs[0]["epochs"] / fit_s, "fit_s": fit_s, "wall": wall,
            "val_loss": outs[0]["val_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--features", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=20, help="global batch size")
    parser.add_argument("--variants", default="2x1,candle",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--detail", action="store_true", help="print every epoch's times")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    names = ["1x2", *(n for n in args.variants.split(",") if n != "1x2")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    print(f"NT3 {args.features} features, {args.samples} samples (80% train), {args.epochs} "
          f"epochs, global batch {args.batch}, {os.cpu_count()} cores, {args.repeats} repeats "
          "interleaved", flush=True)
    with tempfile.TemporaryDirectory(prefix="hvd-overhead-") as tmp:
        for repeat in range(args.repeats):
            for name in names:
                got = launch(name, args, Path(tmp))
                runs[name].append(got)
                print(f"  repeat {repeat + 1} {name:15s} steady {got['steady']:7.1f} "
                      f"samples/s, fit {got['fit']:7.1f} samples/s ({got['fit_s']:.2f} s; "
                      f"process {got['wall']:.2f} s), val_loss {got['val_loss']:.3f}",
                      flush=True)
    print("\nratio to 1x2 of the same repeat: median (per repeat)")
    print(f"  {'variant':15s} {'steady':>26s}   {'fit':>26s}")
    for name in names:
        cells = []
        for key in ("steady", "fit"):
            ratios = [r[key] / ref[key] for r, ref in zip(runs[name], runs["1x2"], strict=True)]
            cells.append(f"{statistics.median(ratios):5.2f}x ("
                         + ", ".join(f"{x:.2f}" for x in ratios) + ")")
        print(f"  {name:15s} {cells[0]:>26s}   {cells[1]:>26s}")


if __name__ == "__main__":
    main()
