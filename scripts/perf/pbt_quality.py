"""Population-based training against random search and Optuna TPE at the same budget,
through the real ``candle run`` (issue 20).

    python scripts/perf/pbt_quality.py [--seeds 8] [--population 8] [--epochs 20]
        [--ready 2] [--concurrent 1] [--methods pbt,random,tpe] [--keep NEW_DIR]

Each method trains ``population`` models for ``epochs`` epochs (the same budget of
member-epochs): PBT a population of ``population`` members in segments of ``ready``
epochs (candle's defaults otherwise: truncate 0.2, perturb [0.8, 1.2], resample 0.25);
random search and TPE (``n_startup_trials`` half the trials, no pruner) ``population``
trials of ``epochs`` epochs, each with one learning rate. The search seed is the benchmark
seed, for all three. Every method and seed is its own sweep in a temp directory
(``--keep NEW_DIR`` keeps them), run by ``candle run`` in a subprocess, warm workers,
``--concurrent`` jobs at a time: with 1 every run repeats exactly; with more, PBT's
decisions depend on which member finishes first (it never waits) and so do its figures.
Prints per method the best final val_loss of each seed, mean, median, seconds per run,
and how often PBT's best is lower. About 2.5 minutes on 2 cores with the defaults.

The user model (``MODEL`` below, written beside each sweep as ``model.py``) is a simulated
training whose best learning rate falls as it trains: each epoch the loss moves towards a
noise floor ``K * lr`` by a factor ``exp(-C * lr)`` (times a little noise). A large lr
gets down fast but stays high; a small one gets low but slowly. Noise-free, the best fixed
lr for 20 epochs (0.19) ends at 0.0043; the best lr decaying geometrically at the ready
points (0.63, x0.74 every 2 epochs) at 0.0023 — what PBT can find, as its members copy
the best and perturb its lr. The state (the loss and its epoch) is JSON in the job's
directory; a PBT segment starts from ``init_from``'s state at ``start_epoch``. The noise
is seeded from (the job's seed, the PBT member or the trial's lr, the epoch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from candle.adaptive.pbt import read_lineage  # noqa: E402
from candle.store import RunStore  # noqa: E402

MODEL = '''
"""A simulated training whose best lr falls as it trains (scripts/perf/pbt_quality.py)."""
import json
import math
import random
from pathlib import Path

import candle

C, K, L0, NOISE = 2.0, 0.02, 1.0, 0.1


def step(loss, lr, rng):
    """One epoch: towards the floor K * lr by exp(-C * lr), with multiplicative noise."""
    floor = K * lr
    return floor + (loss - floor) * math.exp(-C * lr + NOISE * rng.gauss(0.0, 1.0))


def f(params):
    job_dir = Path(params["job_dir"])
    own = job_dir / "state.json"
    if own.exists():  # a retry of this job: go on from where it got to
        state = json.loads(own.read_text())
    elif params.get("init_from"):  # a PBT segment: another segment's state
        state = json.loads((Path(params["init_from"]) / "state.json").read_text())
        state["epoch"] = int(params.get("start_epoch") or 0)
    else:
        state = {"epoch": 0, "loss": L0}
    lr = float(params["lr"])
    # Who trains: a PBT member, else this trial (its lr names it within the sweep).
    who = params["member"] if params.get("member") is not None else f"lr={lr!r}"
    for epoch in range(state["epoch"] + 1, int(params["epochs"]) + 1):
        rng = random.Random(f"{params['seed']}-{who}-{epoch}")
        state = {"epoch": epoch, "loss": step(state["loss"], lr, rng)}
        own.write_text(json.dumps(state))
        candle.report(epoch, {"val_loss": state["loss"]})
    return {"val_loss": state["loss"]}
'''

SPACE = "{lr: {loguniform: [0.001, 1.0]}}"


def sweep_text(method: str, seed: int, population: int, epochs: int, ready: int,
               concurrent: int) -> str:
    head = f"""
        name: {method}-{seed}
        benchmark: "model:f"
        params: {{epochs: {epochs}}}
        search:
          seed: {seed}
          space: {SPACE}
          metric: val_loss
          direction: minimize
    """
    if method == "pbt":
        search = f"""
          method: pbt
          population: {population}
          ready: {ready}
        """
    elif method == "random":
        search = f"""
          method: random
          trials: {population}
        """
    elif method == "tpe":
        search = f"""
          method: optuna
          sampler: {{name: tpe, n_startup_trials: {max(2, population // 2)}}}
          trials: {population}
        """
    else:
        raise SystemExit(f"unknown method {method!r}")
    tail = f"""
        resources: {{scheduler: local, max_concurrent: {concurrent}, workers: warm}}
        retries: 0
        store: runs
    """
    return (textwrap.dedent(head) + textwrap.indent(textwrap.dedent(search).strip(), "  ")
            + "\n" + textwrap.dedent(tail))


def reference(epochs: int, ready: int) -> tuple[tuple[float, float], tuple[float, float, float]]:
    """Noise-free: the best fixed lr's final loss (loss, lr), and the best lr that decays
    geometrically at every ready point (loss, first lr, factor): what a schedule gains."""
    model: dict[str, Any] = {}
    exec(compile(MODEL, "model.py", "exec"), model)  # our own text: the model's step

    class Still:
        def gauss(self, mu: float, sigma: float) -> float:
            return 0.0

    def final(lrs: list[float]) -> float:
        loss = float(model["L0"])
        for lr in lrs:
            loss = float(model["step"](loss, lr, Still()))
        return loss

    grid = [10 ** (-3 + 3 * i / 300) for i in range(301)]
    fixed = min((final([lr] * epochs), lr) for lr in grid)
    decays = [0.5 + 0.02 * i for i in range(26)]
    schedule = min((final([lr * d ** (e // ready) for e in range(epochs)]), lr, d)
                   for lr in grid[::5] for d in decays)
    return fixed, schedule


def finals(method: str, root: Path, epochs: int) -> list[float]:
    """The final val_loss of every member (PBT: its end record) or trial."""
    if method == "pbt":
        ends = [r for r in read_lineage(root) if r["event"] == "end"]
        assert all(int(r["epoch"]) == epochs for r in ends), ends
        return [float(r["score"]) for r in ends]
    store = RunStore(root)
    out = []
    for result in store.results().values():
        if result and result.get("status") == "done":
            out.append(float(result["metrics"]["val_loss"]))
    return out


def run_one(work: Path, method: str, seed: int,
            args: argparse.Namespace) -> tuple[float, int, float]:
    """(best final val_loss, models finished, seconds) of one method and seed."""
    folder = work / f"{method}-{seed}"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(MODEL)
    sweep = folder / "sweep.yaml"
    sweep.write_text(sweep_text(method, seed, args.population, args.epochs, args.ready,
                                args.concurrent))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "candle.cli", "run", str(sweep)],
                          capture_output=True, text=True, cwd=folder, timeout=900)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{method} seed {seed}: candle run exited {proc.returncode}\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    values = finals(method, folder / "runs" / f"{method}-{seed}", args.epochs)
    if len(values) != args.population:
        raise SystemExit(f"{method} seed {seed}: {len(values)} of {args.population} models "
                         f"finished")
    return min(values), len(values), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--ready", type=int, default=2)
    parser.add_argument("--concurrent", type=int, default=1,
                        help="jobs at a time (1: every run repeats exactly)")
    parser.add_argument("--methods", default="pbt,random,tpe")
    parser.add_argument("--keep", type=Path, help="run the sweeps here and keep them")
    args = parser.parse_args()
    methods = args.methods.split(",")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    with tempfile.TemporaryDirectory(prefix="candle-pbt-") as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp)
        best: dict[str, list[float]] = {m: [] for m in methods}
        seconds: dict[str, float] = {m: 0.0 for m in methods}
        for seed in seeds:
            for method in methods:
                value, _, took = run_one(work, method, seed, args)
                best[method].append(value)
                seconds[method] += took
                print(f"  seed {seed} {method:6} best {value:.5f}  ({took:.1f} s)", flush=True)
    (fixed, lr), (sched, lr0, factor) = reference(args.epochs, args.ready)
    print(f"\nnoise-free: the best fixed lr ({lr:.3f}) ends at {fixed:.5f}; the best lr "
          f"decaying by x{factor:.2f} every {args.ready} epochs from {lr0:.3f} at {sched:.5f}")
    print(f"best final val_loss, {args.population} models x {args.epochs} epochs per method "
          f"(PBT: ready every {args.ready}), seeds {seeds[0]}-{seeds[-1]}:")
    print(f"{'method':7} {'mean':>8} {'median':>8} {'s/run':>6}  per seed")
    for method in methods:
        per_seed = " ".join(f"{v:.5f}" for v in best[method])
        print(f"{method:7} {statistics.mean(best[method]):8.5f} "
              f"{statistics.median(best[method]):8.5f} "
              f"{seconds[method] / len(seeds):6.1f}  {per_seed}")
    if "pbt" in best:
        for other in methods:
            if other != "pbt":
                wins = sum(p < o for p, o in zip(best["pbt"], best[other], strict=True))
                print(f"PBT beats {other} in {wins} of {len(seeds)} seeds")
    print(json.dumps({"best": best, "seconds": seconds}))


if __name__ == "__main__":
    main()
