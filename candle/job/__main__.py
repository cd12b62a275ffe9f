"""``python -m candle.job RUN_DIR JOB_ID``: what the launcher starts on every rank."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from candle.job.runner import execute, mpi_rank_and_size
from candle.plan.jobs import Job
from candle.store.atomic import read_json
from candle.store.run_store import RunStore
from candle.supervisor.procs import die_with_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m candle.job")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("job_id")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    die_with_parent()  # ranks under mpirun: die with it

    store = RunStore(args.run_dir).require()
    meta = store.meta()
    params_file = store.job_dir(args.job_id) / "params.json"
    try:
        job = Job.from_record(read_json(params_file))
    except (OSError, ValueError, TypeError) as exc:
        print(f"{params_file}: cannot read the job's parameters: {exc}", file=sys.stderr)
        return 2
    result = execute(
        job, meta["benchmark"], store.job_dir(job.id), Path(meta["base_dir"]),
        metric=meta["metric"], cv_seed=meta.get("cv_seed", 0),
        stratify=meta.get("stratify", True), attempt=args.attempt, threads=args.threads,
    )
    rank, _ = mpi_rank_and_size()
    if rank == 0:
        store.write_result(job.id, result)
    if result["status"] != "done":
        print(result.get("traceback") or result["error"], file=sys.stderr)
        return 1
    print(f"job {job.id} done: " + ", ".join(
        f"{k}={v:.4g}" for k, v in sorted(result["metrics"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
