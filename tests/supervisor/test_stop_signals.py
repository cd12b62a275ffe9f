"""SIGTERM (qdel, scancel, preemption) and Ctrl-C drain the run like a walltime does: a
real 2-rank `mpirun` job gets time to reach its next checkpoint and stops `interrupted`,
and the same command resumes it. Open MPI's mpirun SIGKILLs its ranks about 2 s after it
is itself sent SIGTERM (``odls_base_sigkill_timeout``, 1 s, twice): the epochs here are
longer than that, so a job that is not given its grace is killed mid-epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from candle.store import RunStore
from tests.chaos.test_walltime import epoch_sweep, epochs_logged, run
from tests.conftest import ROOT, candle_cmd, write

pytestmark = [pytest.mark.slow, pytest.mark.integration]

EPOCHS = 10
EPOCH_S = 3.0  # longer than the 2 s Open MPI gives its ranks by default

MPI_MODEL = '''
import json, os, time
from pathlib import Path

from mpi4py import MPI

import candle


def objective(params):
    """Epochs of `epoch_s` seconds with an allreduce each; rank 0 saves the state and logs
    the epoch, then every rank reports (a stop is agreed there, after the checkpoint)."""
    comm = MPI.COMM_WORLD
    job_dir = Path(params["job_dir"])
    state = job_dir / "state.json"
    start = json.loads(state.read_text())["epoch"] if state.exists() else 0
    for epoch in range(start + 1, params["epochs"] + 1):
        time.sleep(params["epoch_s"])
        ranks = comm.allreduce(1)
        if comm.rank == 0:
            tmp = job_dir / "state.tmp"
            tmp.write_text(json.dumps({"epoch": epoch}))
            os.replace(tmp, state)
            with open(job_dir / "epochs.log", "a") as log:
                log.write(f"{epoch}\\n")
        comm.Barrier()
        candle.report(epoch, {"val_loss": 1.0 / epoch})
    return {"val_loss": 1.0 / params["epochs"], "resumed_from": start, "ranks": ranks}
'''


def mpi_sweep(tmp_path: Path) -> Path:
    """One 2-rank job of EPOCHS epochs (the walltime tests' sweep, on mpirun)."""
    path = epoch_sweep(tmp_path, 1, epochs=EPOCHS, epoch_s=EPOCH_S, concurrent=1)
    write(tmp_path / "mpimodel.py", MPI_MODEL)
    doc = json.loads(path.read_text())
    doc["benchmark"] = "mpimodel:objective"
    doc["resources"].update(ranks_per_job=2, slots_per_node=2)
    path.write_text(json.dumps(doc))
    return path


def wait_for_first_epoch(store: RunStore, proc: subprocess.Popen[str]) -> tuple[str, int]:
    """(job id, its launcher's pid) once the job has checkpointed an epoch."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        jobs = list(store.jobs()) if store.exists() else []
        if jobs and (store.job_dir(jobs[0].id) / "epochs.log").exists():
            marker = json.loads((store.job_dir(jobs[0].id) / "running.json").read_text())
            return jobs[0].id, int(marker["pid"])
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no epoch was checkpointed: {proc.communicate()[1]}")


@pytest.mark.parametrize("signalled", ["supervisor", "supervisor and mpirun"])
def test_sigterm_lets_a_2_rank_mpirun_job_reach_its_checkpoint(tmp_path: Path,
                                                               signalled: str) -> None:
    sweep = mpi_sweep(tmp_path)
    store = RunStore(tmp_path / "runs" / "wall")
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job_id, mpirun = wait_for_first_epoch(store, proc)
    before = epochs_logged(store, job_id)[-1]
    if signalled == "supervisor and mpirun":  # what a scheduler's cgroup-wide kill does
        os.kill(mpirun, signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    stopped = store.result(job_id) or {}
    assert stopped.get("status") == "interrupted", (stopped, err)
    step = stopped.get("interrupted_at_step")  # the job stopped itself, at a checkpoint
    assert isinstance(step, int) and before <= step < EPOCHS, (stopped, before)
    checkpoint = json.loads((store.job_dir(job_id) / "state.json").read_text())
    assert checkpoint["epoch"] == step
    assert epochs_logged(store, job_id) == list(range(1, step + 1))
    assert not (store.job_dir(job_id) / "running.json").exists()

    again = run(sweep)
    assert again.returncode == 0, again.stderr
    result = store.result(job_id) or {}
    assert result["status"] == "done"
    assert result["metrics"]["resumed_from"] == step and result["metrics"]["ranks"] == 2
    assert epochs_logged(store, job_id) == list(range(1, EPOCHS + 1))  # none twice, none lost


STRAGGLER = '''
import time
from pathlib import Path

import candle


def objective(params):
    """Sees the stop request, and ignores it (a model with no epoch end in sight)."""
    job_dir = Path(params["job_dir"])
    (job_dir / "started").touch()
    while not candle.stop_requested():
        time.sleep(0.02)
    (job_dir / "asked").touch()
    time.sleep(300)
    return {"val_loss": 1.0}
'''


def straggler_sweep(tmp_path: Path) -> Path:
    path = epoch_sweep(tmp_path, 1, epochs=1, epoch_s=0)
    write(tmp_path / "straggler.py", STRAGGLER)
    doc = json.loads(path.read_text())
    doc["benchmark"] = "straggler:objective"
    path.write_text(json.dumps(doc))
    return path


def wait_for(path_of: Path, proc: subprocess.Popen[str] | None = None,
             timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path_of.exists():
        assert time.time() < deadline and (proc is None or proc.poll() is None), path_of
        time.sleep(0.02)


def test_ctrl_c_drains_and_a_second_ctrl_c_kills_at_once(tmp_path: Path) -> None:
    sweep = straggler_sweep(tmp_path)
    store = RunStore(tmp_path / "runs" / "wall")
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(tmp_path / "runs" / "wall" / "plan.jsonl", proc)
        (job,) = store.jobs()
        wait_for(store.job_dir(job.id) / "started", proc)
        proc.send_signal(signal.SIGINT)
        wait_for(store.job_dir(job.id) / "asked", proc)  # drained: SIGUSR1 reached it
        assert proc.poll() is None  # waiting out the stop grace for the job
        again = time.time()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.time() - again < 10
    assert proc.returncode == 130, err
    assert "stop asked (SIGINT" in err and "SIGINT again: killing the running jobs now" in err
    result = store.result(job.id) or {}
    assert result["status"] == "interrupted" and "stopped while draining" in result["error"]
    assert not (store.job_dir(job.id) / "running.json").exists()


def test_a_job_that_outlives_the_stop_grace_is_terminated(tmp_path: Path) -> None:
    """In-process, with a 1-s stop grace: SIGTERM to the supervisor; the job ignores the
    stop, gets SIGTERM after the grace (which it ignores too) and SIGKILL after that."""
    import threading

    from candle.launch.local import LocalLauncher
    from candle.plan.jobs import iter_jobs
    from candle.spec import load_sweep
    from candle.supervisor.loop import TERMINATE_GRACE_SECONDS, RunStopped, Supervisor
    from candle.supervisor.run import run_meta
    from candle.supervisor.slots import Node, SlotPool

    spec = load_sweep(straggler_sweep(tmp_path))
    store = RunStore(spec.run_dir)
    store.initialise(spec.text, run_meta(spec), iter_jobs(spec))
    (job,) = store.jobs()
    asked: list[float] = []

    def stop_when_started() -> None:
        wait_for(store.job_dir(job.id) / "started")
        asked.append(time.time())
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=stop_when_started)
    helper.start()
    supervisor = Supervisor(store, LocalLauncher(), pool=SlotPool([Node("localhost", 1)]),
                            stop_grace=1.0)
    with pytest.raises(RunStopped) as stopped:
        supervisor.run(store.jobs())
    helper.join()
    took = time.time() - asked[0]
    assert 1.0 + TERMINATE_GRACE_SECONDS <= took < 1.0 + TERMINATE_GRACE_SECONDS + 5
    assert stopped.value.outcome is not None and stopped.value.outcome.interrupted == 1
    result = store.result(job.id) or {}
    assert result["status"] == "interrupted" and "stopped while draining" in result["error"]
    assert result["exit_code"] == -signal.SIGKILL
    assert not list(store.root.glob("leases/*.json"))  # the lease went with the supervisor


def test_a_failed_2_rank_job_is_not_waited_for_while_mpirun_sits_out_its_timeout(
        tmp_path: Path) -> None:
    """With the stop grace, Open MPI's mpirun also waits 2 × ~grace/2 before it SIGKILLs
    the ranks of a job that called MPI_Abort; the supervisor does not wait for that once
    rank 0 has written the failed result."""
    path = epoch_sweep(tmp_path, 1, epochs=1, epoch_s=0)
    write(tmp_path / "broken.py", '''
def objective(params):
    raise RuntimeError(f"rank {params['rank']} broke on purpose")
''')
    doc = json.loads(path.read_text())
    doc["benchmark"] = "broken:objective"
    doc["resources"].update(ranks_per_job=2, slots_per_node=2)
    path.write_text(json.dumps(doc))
    proc = run(path)
    assert proc.returncode == 1, proc.stderr
    store = RunStore(tmp_path / "runs" / "wall")
    (job,) = store.jobs()
    result = store.result(job.id) or {}
    assert "rank 0 broke on purpose" in result["error"]
    written = (store.job_dir(job.id) / "result.json").stat().st_mtime
    assert time.time() - written < 10  # mpirun alone would have taken 2 x 10 s more
