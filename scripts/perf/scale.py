"""Benchmark (issue 18): how the readers of a run directory grow with its number of jobs.

    python scripts/perf/scale.py --jobs 1000 10000 100000 [--keep DIR] [--cold]
        [--plan-jobs 1000000] [--plot docs/figures/scale.png]

Builds a run directory of N finished jobs (a grid of N/5 points, a x b, x 5 CV folds) through the
code jobs use (without their fsyncs unless --fsync): ``RunStore.initialise`` (timed), then
per job ``write_params``, a log.txt and ``write_result`` with a realistic record (metrics,
a 10-epoch history). Then times, as
subprocesses, `candle summary DIR` and `candle status DIR` (warm: best of 3 after one
untimed run; --cold: after `echo 3 > /proc/sys/vm/drop_caches`, root only, else said
skipped), `candle plan` of a --plan-jobs grid, and counts the files each reader opens
(an audit hook on "open" events, in process): summary, status, and two successive polls
(`--wait`'s progress count) with one more job finished in between.
With --keep DIR the run directories stay, as DIR/jobs-N (reused: an existing one is not
rebuilt); --plot writes the readers' times against N (log-log).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from candle.plan import Job, iter_jobs  # noqa: E402
from candle.spec import load_sweep  # noqa: E402
from candle.store import RunStore  # noqa: E402
from candle.store.atomic import atomic_write_text  # noqa: E402
from candle.supervisor.run import run_meta  # noqa: E402

CANDLE = [sys.executable, "-m", "candle.cli"]
FOLDS = 5

SWEEP = """\
name: scale
benchmark: "model:train"
search:
  method: grid
  space: {space}
  metric: val_loss
  direction: minimize
cv: {{folds: {folds}}}
"""


def sweep_file(folder: Path, jobs: int) -> Path:
    points = max(1, jobs // FOLDS)
    if points % 100 == 0:  # a grid's usual shape: a product of short lists
        space = f"{{a: {list(range(points // 100))}, b: {list(range(100))}}}"
    else:
        space = f"{{a: {list(range(points))}}}"
    path = folder / f"scale-{jobs}.yaml"
    path.write_text(SWEEP.format(space=space, folds=FOLDS))
    (folder / "model.py").write_text("def train(params):\n    return {'val_loss': 0.0}\n")
    return path


def result_record(i: int, job: Job) -> dict[str, Any]:
    """What a finished job writes (candle.job.runner.execute): its record, metrics and a
    10-epoch history."""
    loss = [1.0 / (e + 1 + i % 7) for e in range(10)]
    return {"job_id": job.id, "point": job.point, "fold": job.fold, "replica": job.replica,
            "attempt": 1, "host": "node0001", "ranks": 1, "node": "node0001",
            "started": 1.7e9 + i, "status": "done", "error": None,
            "metrics": {"val_loss": loss[-1], "loss": loss[-1] * 0.9,
                        "acc": 0.5 + (i % 50) / 100},
            "history": {"loss": [x * 0.9 for x in loss], "val_loss": loss},
            "ended": 1.7e9 + i + 12.5, "duration_s": 12.5}


def build(run_dir: Path, jobs: int, tmp: Path, fsync: bool) -> dict[str, float]:
    """The run directory, through RunStore's own writers. Without ``fsync`` those writers'
    fsyncs are skipped (the files are the same; 100k jobs build in minutes, not hours)."""
    real_fsync = os.fsync
    if not fsync:
        os.fsync = lambda fd: None
    try:
        return _build(run_dir, jobs, tmp)
    finally:
        os.fsync = real_fsync


def _build(run_dir: Path, jobs: int, tmp: Path) -> dict[str, float]:
    sweep = load_sweep(sweep_file(tmp, jobs))
    sweep = replace(sweep, store=run_dir.parent, name=run_dir.name)
    store = RunStore(run_dir)
    planned = list(iter_jobs(sweep))
    started = time.perf_counter()
    store.initialise(sweep.text, run_meta(sweep), planned)
    initialise = time.perf_counter() - started
    started = time.perf_counter()
    for i, job in enumerate(planned):
        store.write_params(job)
        atomic_write_text(store.log_path(job.id), f"job {job.id}\nepoch 10/10\n")
        store.write_result(job.id, result_record(i, job))
    return {"initialise_s": initialise, "write_jobs_s": time.perf_counter() - started}


def timed(argv: list[str], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


def drop_caches() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def cold(argv: list[str]) -> float | None:
    if not drop_caches():
        return None
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


class OpenCounter:
    """Files opened under ``root`` while active (sys.addaudithook "open" events)."""

    def __init__(self, root: Path) -> None:
        self.prefix = str(root.resolve())
        self.active = False
        self.paths: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event == "open" and isinstance(args[0], str | Path):
            path = os.path.abspath(os.fspath(args[0]))
            if path.startswith(self.prefix):
                self.paths.append(path)

    def count(self, work: Callable[[], object]) -> tuple[int, int]:
        """(files opened, of them result.json) by ``work``."""
        self.paths, self.active = [], True
        try:
            work()
        finally:
            self.active = False
        return len(self.paths), sum(p.endswith("result.json") for p in self.paths)


def opens(run_dir: Path) -> dict[str, tuple[int, int]]:
    from candle.reporting import collect_status
    from candle.reporting.summary_cache import summarise_cached
    from candle.schedulers.batch.follow import _finished

    counter = OpenCounter(run_dir)
    shutil.rmtree(run_dir / "index", ignore_errors=True)  # the readers' caches (issue 18)
    out = {"summary, no cache yet": counter.count(
               lambda: summarise_cached(RunStore(run_dir))),
           "summary": counter.count(lambda: summarise_cached(RunStore(run_dir))),
           "status": counter.count(lambda: collect_status(RunStore(run_dir)))}
    store = RunStore(run_dir)  # one --wait: the same store, poll after poll

    def polls() -> None:
        out["poll 1"] = counter.count(lambda: _finished(store, None))
        out["poll 2"] = counter.count(lambda: _finished(store, None))

    finish_again(store, polls)
    out["poll 3 (1 new result)"] = counter.count(lambda: _finished(store, None))
    return out


def finish_again(store: RunStore, meanwhile: Callable[[], object]) -> None:
    """The first job as if not started yet (its directory moved away) while ``meanwhile``
    runs, then finished anew: a new job directory, a new result (candle never rewrites a
    done result in place)."""
    job = next(iter(store.jobs()))
    result = store.result(job.id) or {}
    aside = store.root / "aside"
    os.replace(store.job_dir(job.id), aside)
    meanwhile()
    store.write_params(job)
    store.write_result(job.id, result)
    shutil.rmtree(aside)


def after_new_result(run_dir: Path, argv: list[str]) -> float:
    """`argv`'s time right after one more job finished (the kept summary is then stale)."""
    finish_again(RunStore(run_dir), lambda: subprocess.run(
        argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT))
    return timed(argv, repeat=1)


def measure(jobs: int, run_dir: Path, tmp: Path, args: argparse.Namespace
            ) -> tuple[list[tuple[str, str]], dict[str, float]]:
    """The rows printed for one N, and the timings plotted."""
    rows: list[tuple[str, str]] = []
    times: dict[str, float] = {}
    if RunStore(run_dir).exists():
        rows.append(("build", f"reused {run_dir}"))
    else:
        built = build(run_dir, jobs, tmp, args.fsync)
        rows += [("initialise", f"{built['initialise_s']:.2f} s"),
                 ("write N finished jobs", f"{built['write_jobs_s']:.1f} s")]
        times["initialise"] = built["initialise_s"]
    files = sum(len(f) for _, _, f in os.walk(run_dir / "jobs"))
    rows.append(("files under jobs/", f"{files} ({files / jobs:.1f} per job)"))
    for name, (count, results) in opens(run_dir).items():
        rows.append((f"files opened: {name}", f"{count} ({results} result.json)"))
    for name in ("summary", "status"):
        argv = [*CANDLE, name, str(run_dir)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)  # warm
        times[f"{name}, warm"] = timed(argv)
        rows.append((f"candle {name} (warm)", f"{times[f'{name}, warm']:.2f} s"))
        if name == "summary":
            times["summary, after 1 new result"] = after_new_result(run_dir, argv)
            rows.append(("candle summary (warm, 1 new result)",
                         f"{times['summary, after 1 new result']:.2f} s"))
        if args.cold:
            took = cold(argv)
            rows.append((f"candle {name} (cold)",
                         "skipped (not root)" if took is None else f"{took:.2f} s"))
            if took is not None:
                times[f"{name}, cold"] = took
    return rows, times


def plot(figures: dict[int, dict[str, float]], path: Path) -> None:
    """Seconds against N, log-log, one line per reader (and initialise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(figures)
    names = sorted({k for f in figures.values() for k in f})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in names:
        have = [n for n in sizes if name in figures[n]]
        ax.plot(have, [figures[n][name] for n in have], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("finished jobs in the run directory (N)")
    ax.set_ylabel("seconds")
    ax.set_title("candle readers against N (scripts/perf/scale.py)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000],
                        help="one or more run sizes (N)")
    parser.add_argument("--keep", type=Path,
                        help="build (or reuse) the run directories here (DIR/jobs-N)")
    parser.add_argument("--cold", action="store_true", help="also time after dropping caches")
    parser.add_argument("--fsync", action="store_true",
                        help="build with the writers' fsyncs (slow; default: skipped)")
    parser.add_argument("--plan-jobs", type=int, default=0,
                        help="also time `candle plan` of a grid of this many jobs")
    parser.add_argument("--plot", type=Path, help="write the growth (time against N) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        table: dict[str, dict[int, str]] = {}
        figures: dict[int, dict[str, float]] = {}
        for jobs in args.jobs:
            run_dir = ((args.keep or tmp) / f"jobs-{jobs}").resolve()
            rows, figures[jobs] = measure(jobs, run_dir, tmp, args)
            for key, value in rows:
                table.setdefault(key, {})[jobs] = value
        extra = [("candle --version (start-up)", f"{timed([*CANDLE, '--version']):.2f} s")]
        if args.plan_jobs:
            plan = sweep_file(tmp, args.plan_jobs)
            extra.append((f"candle plan ({args.plan_jobs} jobs)",
                          f"{timed([*CANDLE, 'plan', str(plan)], repeat=1):.2f} s"))
    width = max(len(k) for k in [*table, *(k for k, _ in extra)])
    print(f"{'N':<{width}}  " + "  ".join(f"{n:>24}" for n in args.jobs))
    for key, values in table.items():
        print(f"{key:<{width}}  " + "  ".join(f"{values.get(n, ''):>24}" for n in args.jobs))
    for key, value in extra:
        print(f"{key:<{width}}  {value}")
    if args.plot:
        plot(figures, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
