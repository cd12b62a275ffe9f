"""Benchmark: what the built-ins' checkpoints cost at NT3's real width (issue 18).

    python scripts/perf/checkpoint_bytes.py [--width 60483] [--saves 3]
        [--optimizers sgd,adam] [--epoch-seconds 3.2,6.7] [--epochs 400] [--dir DIR]

Builds upstream NT3 (154.9M parameters at 60,483 features; conv 128x20, 128x10, dense
200, 20) with each optimizer, gives the optimizer its slots (one applied step), and times
``Checkpoints.save`` (the periodic checkpoint: weights, plus the optimizer's slots where they
matter, fsynced) ``--saves`` times and ``Checkpoints.finish`` (what a done job keeps) once;
for comparison, one save in the previous format (a full ``.keras`` file, optimizer
included, written every epoch: two kept plus best.keras). Prints bytes per save, seconds
per save, bytes kept, and, for a job of ``--epochs`` epochs of ``--epoch-seconds`` each,
how many checkpoints ``ckpt_every=auto`` writes (`Checkpoints.due` on a simulated clock),
its overhead, and the bytes written per job.
Files go to a temporary directory under --dir (default: the system's), removed after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

GB = 1e9


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def measure(tf: Any, width: int, optimizer: str, saves: int, work: Path) -> dict[str, Any]:
    from candle.benchmark import get_benchmark
    from candle_benchmarks._keras import CKPT_OVERHEAD, Checkpoints, make_optimizer
    from candle_benchmarks.conv1d import build_conv_classifier

    params = {**get_benchmark("nt3").defaults(), "optimizer": optimizer}
    model = build_conv_classifier(tf, params, width)
    model.compile(optimizer=make_optimizer(tf, params), loss="categorical_crossentropy")
    # One step on zero gradients: the optimizer builds its slots (as after a real epoch)
    # without the cost of a full-width forward and backward pass.
    model.optimizer.apply_gradients(
        [(tf.zeros_like(v), v) for v in model.trainable_variables])
    weights = 4 * model.count_params()  # float32
    job = work / optimizer
    ckpt = Checkpoints(job, keep=1, every="1")
    seconds, written = [], []
    history = {"loss": [1.0], "val_loss": [1.0]}
    for epoch in range(1, saves + 1):
        before = ckpt.saved_bytes
        started = time.perf_counter()
        ckpt.save(model, epoch, history)
        seconds.append(time.perf_counter() - started)
        written.append(ckpt.saved_bytes - before)
    during = dir_bytes(ckpt.dir)
    started = time.perf_counter()
    ckpt.finish(model, saves, history)
    finish_s = time.perf_counter() - started
    kept = dir_bytes(ckpt.dir)
    kept_files = sorted(p.name for p in ckpt.dir.iterdir())
    # The previous format: model.save("epoch-NNNN.keras"), optimizer included, fsynced.
    old = job / "old.keras"
    started = time.perf_counter()
    model.save(old)
    with old.open("rb") as handle:
        os.fsync(handle.fileno())
    old_s = time.perf_counter() - started
    old_bytes = old.stat().st_size
    shutil.rmtree(job, ignore_errors=True)
    save_s = min(seconds)
    return {"optimizer": optimizer, "params": model.count_params(), "weights": weights,
            "save_bytes": written[-1], "save_s": seconds, "during": during,
            "finish_s": finish_s, "kept": kept, "kept_files": kept_files,
            "old_bytes": old_bytes, "old_s": old_s,
            "auto_interval_s": save_s / CKPT_OVERHEAD}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=60483)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--optimizers", default="sgd,adam")
    parser.add_argument("--epoch-seconds", default="3.2,6.7",
                        help="epoch times to project a job's checkpoint cost for")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for optimizer in args.optimizers.split(","):
            r = measure(tf, args.width, optimizer, args.saves, Path(tmp))
            w = r["weights"]
            print(f"\n== NT3 width {args.width:,}: {r['params']:,} parameters, weights "
                  f"{w / GB:.3f} GB (float32); optimizer {optimizer}")
            print(f"  periodic checkpoint: {r['save_bytes'] / GB:.3f} GB "
                  f"({r['save_bytes'] / w:.2f}x weights) per save, "
                  f"{', '.join(f'{s:.2f}' for s in r['save_s'])} s per save (fsync)")
            print(f"  on disk while training (ckpt_keep_limit=1): {r['during'] / GB:.3f} GB")
            print(f"  done job keeps {r['kept_files']}: {r['kept'] / GB:.4f} GB = "
                  f"{r['kept'] / w:.4f}x weights (final model written in "
                  f"{r['finish_s']:.2f} s)")
            print(f"  previous format, one epoch-NNNN.keras: {r['old_bytes'] / GB:.3f} GB "
                  f"({r['old_bytes'] / w:.2f}x weights) in {r['old_s']:.2f} s; 2 kept "
                  f"+ best.keras (its defaults): {3 * r['old_bytes'] / GB:.2f} GB per job")
            print(f"  ckpt_every=auto: about one save per {r['auto_interval_s']:.0f} s of "
                  "training (saves <= 2% of the time)")
            for epoch_s in (float(x) for x in args.epoch_seconds.split(",")):
                n = simulate_auto(r["save_bytes"], statistics.median(r["save_s"]),
                                  epoch_s, args.epochs)
                save_s = statistics.median(r["save_s"])
                job_s = args.epochs * epoch_s
                print(f"  {args.epochs} epochs x {epoch_s} s: auto writes {n} checkpoints "
                      f"({n * r['save_bytes'] / GB:.1f} GB, overhead "
                      f"{n * save_s / job_s:.1%}); every epoch would write "
                      f"{args.epochs * r['save_bytes'] / GB:.0f} GB (overhead "
                      f"{save_s / epoch_s:.0%}); previous format "
                      f"{args.epochs * r['old_bytes'] / GB:.0f} GB "
                      f"(overhead {r['old_s'] / epoch_s:.0%})")


def simulate_auto(save_bytes: int, save_s: float, epoch_s: float, epochs: int) -> int:
    """How many periodic checkpoints ``ckpt_every=auto`` writes in a job of ``epochs``
    epochs of ``epoch_s`` seconds when a save takes ``save_s``: `Checkpoints.due` itself,
    on a simulated clock."""
    from candle_benchmarks import _keras

    clock = [0.0]
    real = _keras.time
    _keras.time = type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])})
    try:
        ckpt = _keras.Checkpoints(Path(tempfile.gettempdir()), 1, "auto")
        ckpt.expected_bytes = save_bytes
        for epoch in range(1, epochs):  # none after the last: the final model instead
            clock[0] += epoch_s
            if ckpt.due(epoch):
                clock[0] += save_s
                ckpt.saves, ckpt.save_seconds, ckpt.spent = (
                    ckpt.saves + 1, save_s, ckpt.spent + save_s)
        return ckpt.saves
    finally:
        _keras.time = real

if __name__ == "__main__":
    main()
