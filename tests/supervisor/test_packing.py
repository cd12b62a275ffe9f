"""A packed allocation of 2-rank MPI jobs (real mpirun, real mpi4py): the slots stay full,
never over-full, and a job whose rank segfaults, is OOM-killed or raises fails alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from candle.store import RunStore
from tests.conftest import ROOT, candle_cmd, write

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MODEL = '''
import os, signal, time
from mpi4py import MPI

def objective(params):
    comm = MPI.COMM_WORLD
    mode = params.get("mode", "ok")
    if comm.rank == 1 and mode == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if comm.rank == 1 and mode == "oom":
        os._exit(137)
    if comm.rank == 1 and mode == "raise":
        raise RuntimeError("rank 1 exploded on purpose")
    time.sleep(float(params["sleep"]))
    ranks_seen = comm.allreduce(1)              # a real collective over the job's ranks
    return {"val_loss": params["x"] ** 2, "ranks_seen": float(ranks_seen)}
'''

SLOTS = 4
RANKS = 2


def sweep(tmp_path: Path, points: list[dict[str, object]]) -> Path:
    write(tmp_path / "mpimodel.py", MODEL)
    doc = {
        "name": "packed", "benchmark": "mpimodel:objective",
        "search": {"method": "list", "points": points, "metric": "val_loss"},
        # 4 declared slots on this 2-core machine: two 2-rank jobs side by side
        "resources": {"scheduler": "local", "ranks_per_job": RANKS, "slots_per_node": SLOTS},
        "retries": 0, "store": "runs",
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(doc))
    return path


def test_packed_jobs_fill_slots_and_crashes_stay_isolated(tmp_path: Path) -> None:
    crashes = {"segfault": 3.0, "oom": 5.0, "raise": 7.0}
    points: list[dict[str, object]] = [{"x": float(i), "sleep": 1.5} for i in range(6)]
    points += [{"x": x, "sleep": 1.5, "mode": mode} for mode, x in crashes.items()]
    points = sorted(points, key=lambda p: float(p["x"]))  # type: ignore[arg-type]
    path = sweep(tmp_path, points)
    proc = subprocess.run(candle_cmd("run", str(path)), capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "3 job(s) failed" in proc.stderr

    store = RunStore(tmp_path / "runs" / "packed")
    done, failed = [], {}
    for job in store.jobs():
        result = store.result(job.id)
        assert result is not None
        if result["status"] == "done":
            assert result["metrics"]["ranks_seen"] == RANKS  # the allreduce spanned both
            done.append(result)
        else:
            failed[job.params.get("mode")] = result
    assert len(done) == 6
    assert set(failed) == set(crashes)
    assert "rank 1 exploded on purpose" in failed["raise"]["error"] + str(
        failed["raise"].get("log_tail"))
    assert "SIGSEGV" in failed["segfault"]["error"]
    assert "signal 11" in "\n".join(failed["segfault"]["log_tail"])  # mpirun's own words
    assert "137" in failed["oom"]["error"]

    # Slot accounting: never more than SLOTS ranks at once, and jobs did overlap.
    events = sorted([(r["started"], RANKS) for r in done] + [(r["ended"], -RANKS) for r in done])
    in_use = peak = 0
    for _, delta in events:
        in_use += delta
        peak = max(peak, in_use)
    assert peak <= SLOTS
    assert peak == SLOTS, "two 2-rank jobs never ran side by side"

    status = subprocess.run(candle_cmd("status", str(store.root)), capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert "failed" in status.stdout
    for mode in crashes:
        job_ids = [j.id for j in store.jobs() if j.params.get("mode") == mode]
        assert job_ids[0] in status.stdout
