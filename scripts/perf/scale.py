"""Benchmark (issue 18): how the readers of a run directory grow with its number of jobs.

    python scripts/perf/scale.py --jobs 10000 [--keep DIR] [--cold] [--plan-jobs 1000000]

Builds a run directory of N finished jobs (a grid of N/5 points, a x b, x 5 CV folds) through the
code jobs use (without their fsyncs unless --fsync): ``RunStore.initialise`` (timed), then
per job ``write_params``, a log.txt and ``write_result`` with a realistic record (metrics,
a 10-epoch history). Then times, as
subprocesses, `candle summary DIR` and `candle status DIR` (warm: best of 3 after one
untimed run; --cold: after `echo 3 > /proc/sys/vm/drop_caches`, root only, else said
skipped), `candle plan` of a --plan-jobs grid, and counts the files each reader opens
(an audit hook on "open" events, in process): summary, status, and two successive polls
(`--wait`'s progress count) with one more job finished in between.
With --keep DIR the run directory stays (reusable: an existing DIR is not rebuilt).
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
    from candle.reporting import collect_status, summarise
    from candle.schedulers.batch.follow import _finished

    counter = OpenCounter(run_dir)
    shutil.rmtree(run_dir / "index", ignore_errors=True)  # the readers' caches (issue 18)
    out = {"summary, no cache yet": counter.count(lambda: summarise(RunStore(run_dir))),
           "summary": counter.count(lambda: summarise(RunStore(run_dir))),
           "status": counter.count(lambda: collect_status(RunStore(run_dir)))}
    store = RunStore(run_dir)  # one --wait: the same store, poll after poll
    job = next(iter(store.jobs()))
    result = store.result(job.id) or {}
    (store.job_dir(job.id) / "result.json").unlink()  # as if that job were still running
    out["poll 1"] = counter.count(lambda: _finished(store, None))
    out["poll 2"] = counter.count(lambda: _finished(store, None))
    store.write_result(job.id, result)
    out["poll 3 (1 new result)"] = counter.count(lambda: _finished(store, None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the run directory here")
    parser.add_argument("--cold", action="store_true", help="also time after dropping caches")
    parser.add_argument("--fsync", action="store_true",
                        help="build with the writers' fsyncs (slow; default: skipped)")
    parser.add_argument("--plan-jobs", type=int, default=0,
                        help="also time `candle plan` of a grid of this many jobs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        run_dir = (args.keep or tmp / "run").resolve()
        rows: list[tuple[str, str]] = [("jobs", str(args.jobs))]
        if RunStore(run_dir).exists():
            rows.append(("build", f"reused {run_dir}"))
        else:
            built = build(run_dir, args.jobs, tmp, args.fsync)
            rows += [("initialise", f"{built['initialise_s']:.2f} s"),
                     ("write N finished jobs", f"{built['write_jobs_s']:.1f} s")]
        files = sum(len(f) for _, _, f in os.walk(run_dir / "jobs"))
        rows.append(("files under jobs/", f"{files} ({files / args.jobs:.1f} per job)"))
        for name, (count, results) in opens(run_dir).items():
            rows.append((f"files opened: {name}", f"{count} ({results} result.json)"))
        for name in ("summary", "status"):
            argv = [*CANDLE, name, str(run_dir)]
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)  # warm
            rows.append((f"candle {name} (warm)", f"{timed(argv):.2f} s"))
            if args.cold:
                took = cold(argv)
                rows.append((f"candle {name} (cold)",
                             "skipped (not root)" if took is None else f"{took:.2f} s"))
        rows.append(("candle --version (start-up)",
                     f"{timed([*CANDLE, '--version']):.2f} s"))
        if args.plan_jobs:
            plan = sweep_file(tmp, args.plan_jobs)
            rows.append((f"candle plan ({args.plan_jobs} jobs)",
                         f"{timed([*CANDLE, 'plan', str(plan)], repeat=1):.2f} s"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
