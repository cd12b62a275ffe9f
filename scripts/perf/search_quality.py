"""How well and how fast each sampler searches, through candle's own OptunaSource.

    python scripts/perf/search_quality.py [--trials 60] [--seeds 8] [--dims 3]

Prints, per sampler, the best value reached on a shifted sphere (minimum 0) over seeds, with
2 trials in flight finishing out of order, and the mean time per trial (ask + tell + journal
append) — the supervisor's overhead per trial, not the model's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the test helpers live in tests/
from tests.adaptive.simulate import best_value, config, drive, shifted_sphere


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--dims", type=int, default=3)
    parser.add_argument("--samplers", default="tpe,random,cmaes,qmc,nsga2,gp")
    args = parser.parse_args()
    print(f"shifted sphere, {args.dims}-D in [-5, 5], {args.trials} trials, 2 in flight, "
          f"{args.seeds} seeds")
    print(f"{'sampler':8} {'mean best':>10} {'median':>8} {'worst':>8} {'ms/trial':>9}")
    for sampler in args.samplers.split(","):
        best, seconds = [], 0.0
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                source, _ = drive(Path(tmp), config(sampler, seed, args.trials, args.dims),
                                  shifted_sphere, seed=seed)
                seconds += time.perf_counter() - started
                best.append(best_value(source))
        print(f"{sampler:8} {statistics.mean(best):10.3f} {statistics.median(best):8.3f} "
              f"{max(best):8.3f} {1000 * seconds / (args.seeds * args.trials):9.1f}")


if __name__ == "__main__":
    main()
