"""training.job_timeout (CANDLE's BENCHMARK_TIMEOUT): an attempt that runs longer is
killed — its whole process group, SIGTERM then SIGKILL — and ends ``timeout``; it is
retried like a failure, and a job that times out on every try stays ``timeout`` (exit 1,
its own count in `candle status`). A drain (walltime, SIGUSR1) never times a job out.

No test measures by the wall clock: an attempt expected to succeed returns at once, under a
limit (TIMEOUT) a loaded machine still starts it well inside; a hanging one hangs until the
limit kills it, and at most HANG seconds (then it ends done, and the test fails rather than
hangs, if nothing timed it out)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from candle.launch import LocalLauncher
from candle.plan import iter_jobs
from candle.schedulers.batch import inside
from candle.schedulers.batch.submit import batch_dir
from candle.spec import load_sweep
from candle.spec.site import SiteConfig
from candle.state import JobState
from candle.store import RunStore
from candle.store.run_store import ATTEMPTS, pid_alive
from candle.supervisor.run import build_supervisor, run_meta
from candle.supervisor.slots import Node, SlotPool
from tests.conftest import ROOT, candle_cmd, write
from tests.store.test_manifest import OLD_RUN_JSON

TIMEOUT = 10  # job_timeout: a healthy attempt (Python, candle, return) starts well inside
HANG = 120  # how long a hanging model hangs at most, if no timeout kills it

# x == 1 hangs (and so does a child it starts: the whole group must die); the job runner
# catches SIGTERM as a stop request, so only the SIGKILL after it ends them.
HANGING_MODEL = f"""
import subprocess, sys, threading
from pathlib import Path


def f(params):
    if params["x"] == 1:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep({HANG})"])
        with open(Path(params["job_dir"]) / "children.txt", "a") as out:
            out.write(f"{{child.pid}}\\n")
        threading.Event().wait({HANG})
    return {{"val_loss": float(params["x"])}}
"""

# Hangs on its first attempt only (a marker in its job_dir, kept for the retry, like a
# checkpoint); dies of the timeout's SIGTERM like a model that never asked to catch it.
FLAKY_MODEL = f"""
import signal, threading
from pathlib import Path


def f(params):
    marker = Path(params["job_dir"]) / "hung-once"
    if not marker.exists():
        marker.write_text("")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        threading.Event().wait({HANG})
    return {{"val_loss": 0.5}}
"""


def sweep_file(tmp_path: Path, model: str, *, xs: list[int], timeout: float,
               retries: int) -> Path:
    write(tmp_path / "model.py", model)
    return write(tmp_path / "sweep.yaml", f"""
        name: timeouts
        benchmark: "model:f"
        search:
          method: grid
          space: {{x: {xs}}}
          metric: val_loss
        training: {{job_timeout: {timeout}}}
        resources: {{max_concurrent: 2}}
        retries: {retries}
    """)


def job_of(store: RunStore, x: int) -> str:
    return next(job.id for job in store.jobs() if job.point_params["x"] == x)


def attempts(store: RunStore, job_id: str) -> list[dict[str, Any]]:
    path = store.job_dir(job_id) / ATTEMPTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_hung_job_is_killed_on_every_try_and_ends_timeout(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sweep = sweep_file(tmp_path, HANGING_MODEL, xs=[1, 2], timeout=TIMEOUT, retries=1)
    result = cli("run", str(sweep))
    assert result.code == 1, result.err
    assert "1 done, 0 failed, 1 timed out, " in result.out
    assert "1 job(s) timed out" in result.err

    store = RunStore(tmp_path / "runs" / "timeouts")
    hung, fine = job_of(store, 1), job_of(store, 2)
    assert store.state(fine) is JobState.DONE
    assert store.state(hung) is JobState.TIMEOUT
    final = store.result(hung) or {}
    assert final["error"] == "killed after job_timeout 10 s (attempt 2 of 2)"
    assert final["attempt"] == 2 and final["metrics"] == {}
    [first] = attempts(store, hung)
    assert first["status"] == "timeout"
    assert first["error"] == "killed after job_timeout 10 s (attempt 1 of 2)"
    # each attempt's child, in the launcher's process group, died with it
    children = [int(pid) for pid in
                (store.job_dir(hung) / "children.txt").read_text().split()]
    assert len(children) == 2
    wait_until(lambda: not any(pid_alive(pid) for pid in children), 10, "the children")

    shown = cli("status", str(store.root))
    assert shown.code == 0
    assert "failed 0" in shown.out and "timeout 1" in shown.out and "done 1" in shown.out
    assert f"timeout {hung} (attempt 2): killed after job_timeout 10 s" in shown.out
    assert "=== attempt 2" in shown.out  # its log tail, like a failed job's
    counts = json.loads(cli("status", str(store.root), "--format", "json").out)
    assert counts["counts"]["timeout"] == 1 and counts["counts"]["failed"] == 0
    assert [f["state"] for f in counts["failures"]] == ["timeout"]

    rows = json.loads(cli("summary", str(store.root), "--format", "json").out)
    by_x = {row["params"]["x"]: row for row in rows}
    assert (by_x[1]["n"], by_x[1]["failed"], by_x[1]["mean"]) == (0, 1, None)
    assert (by_x[2]["n"], by_x[2]["failed"]) == (1, 0)


@pytest.mark.slow
def test_a_job_that_hangs_once_is_done_on_its_retry(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sweep = sweep_file(tmp_path, FLAKY_MODEL, xs=[1], timeout=TIMEOUT, retries=1)
    result = cli("run", str(sweep))
    assert result.code == 0, result.err
    assert "1 done, 0 failed, 0 already done" in result.out
    store = RunStore(tmp_path / "runs" / "timeouts")
    job = job_of(store, 1)
    assert store.state(job) is JobState.DONE
    assert (store.result(job) or {})["attempt"] == 2
    [first] = attempts(store, job)
    assert (first["status"], first["exit_code"]) == ("timeout", -signal.SIGTERM)
    assert first["error"] == "killed after job_timeout 10 s (attempt 1 of 2)"


# Reports epoch 1, then waits for a stop request (the timeout's SIGTERM) and stops at its
# next epoch end: the runner writes "interrupted", with the epoch, and its TensorBoard file
# says running; the supervisor's "timeout" must reach that file.
STOPPING_MODEL = f"""
import time

import candle


def f(params):
    candle.report(1, {{"val_loss": 1.0}})
    began = time.time()
    while not candle.stop_requested() and time.time() < began + {HANG}:
        time.sleep(0.02)
    candle.report(2, {{"val_loss": 0.9}})
    return {{"val_loss": 0.9}}
"""


@pytest.mark.slow
def test_a_timed_out_jobs_tensorboard_session_ends_failed(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from tensorboard.plugins.hparams import api_pb2, metadata

    from candle.store.tensorboard import TB_DIR
    from tests.store.test_tensorboard import accumulate, hparams_content, scalars

    sweep = sweep_file(tmp_path, STOPPING_MODEL, xs=[1], timeout=TIMEOUT, retries=0)
    result = cli("run", str(sweep))
    assert result.code == 1, result.err
    store = RunStore(tmp_path / "runs" / "timeouts")
    job = job_of(store, 1)
    assert (store.result(job) or {})["status"] == "timeout"
    acc = accumulate(store.job_dir(job) / TB_DIR)
    end = metadata.parse_session_end_info_plugin_data(
        hparams_content(acc)[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_FAILURE
    assert [step for step, _ in scalars(acc)["val_loss"]][:1] == [1]  # its epochs stay


# Waits for a stop request, then holds on past job_timeout before it checkpoints.
DRAINED_MODEL = """
import time
from pathlib import Path

import candle


def f(params):
    began = time.time()
    (Path(params["job_dir"]) / "ready").write_text("")
    while not candle.stop_requested():
        time.sleep(0.02)
    while time.time() < began + params["x"]:
        time.sleep(0.02)
    candle.report(1, {"val_loss": 1.0})
    return {"val_loss": 1.0}
"""


@pytest.mark.slow
def test_a_job_stopped_by_a_drain_is_interrupted_not_timed_out(tmp_path: Path) -> None:
    # The job must start and be signalled within the 8 s limit (slack for a busy machine),
    # then holds on 10 s after it began: past the limit, while draining.
    sweep = sweep_file(tmp_path, DRAINED_MODEL, xs=[10], timeout=8, retries=1)
    store = RunStore(tmp_path / "runs" / "timeouts")
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: store.exists() and any(
            (store.job_dir(job.id) / "ready").exists() for job in store.jobs()), 60,
            "the job to start")
        proc.send_signal(signal.SIGUSR1)  # as Slurm's --signal=B:USR1@lead does
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 75, err  # stopped at a checkpoint: the same command continues
    job = job_of(store, 10)
    result = store.result(job) or {}
    assert result["status"] == "interrupted", result
    assert store.state(job) is JobState.INTERRUPTED and not attempts(store, job)
    assert "job_timeout" not in err


SLURM_SWEEP = """
name: allocated
benchmark: "model:f"
search: {method: grid, space: {x: [1]}, metric: val_loss}
training: {job_timeout: "00:00:10"}
resources: {scheduler: slurm, site: generic-slurm, mode: array, walltime: "01:00:00"}
retries: 2
"""


class FakeAllocation:
    """The allocation side of a Slurm array task, on this machine (no Slurm)."""

    STOP_GRACE = 5.0
    CAN_REQUEUE = False

    def this_job(self) -> str:
        return "4242"

    def this_task(self) -> str:
        return "4242_0"

    def array_index(self) -> int:
        return 0

    def allocation_end(self, job_id: str) -> float | None:
        return None

    def allocation_pool(self, gpus_per_node: int, site: SiteConfig) -> SlotPool:
        return SlotPool([Node("localhost", 2)])

    def launcher(self, site: SiteConfig) -> LocalLauncher:
        return LocalLauncher()

    def threads_per_job(self) -> int:
        return 1

    def requeue(self, task_id: str) -> None:
        raise AssertionError("a timed-out job is not requeued")


def allocated_run(tmp_path: Path) -> RunStore:
    write(tmp_path / "model.py", FLAKY_MODEL)
    sweep = load_sweep(write(tmp_path / "sweep.yaml", SLURM_SWEEP))
    store = RunStore(sweep.run_dir)
    store.initialise(sweep.text, run_meta(sweep), iter_jobs(sweep))
    return store


def test_the_manifest_carries_job_timeout_to_the_allocations_supervisor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = allocated_run(tmp_path)
    manifest = store.manifest()
    assert manifest.job_timeout == 10.0
    assert json.loads((store.root / "run.json").read_text())["job_timeout"] == 10.0
    pool = SlotPool([Node("n1", 2)])
    for array_task in (False, True):
        built = build_supervisor(store, manifest, LocalLauncher(), pool, threads=1,
                                 deadline=None, array_task=array_task)
        assert built.job_timeout == 10.0
    here = FakeAllocation()
    assert inside._supervisor(store, here, array_task=False).job_timeout == 10.0


@pytest.mark.slow
def test_an_array_task_times_its_job_out(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = allocated_run(tmp_path)
    monkeypatch.setattr(inside, "allocation_of", lambda store: FakeAllocation())
    [job] = store.jobs()
    batch_dir(store).mkdir()
    write(batch_dir(store) / "chunk-0.txt", f"{job.id}\n")
    assert inside.array_task(store.root, "chunk-0.txt") == 1  # no retry in an array task
    result = store.result(job.id) or {}
    assert result["status"] == "timeout"
    assert result["error"] == "killed after job_timeout 10 s (attempt 1 of 1)"
    # the next wave (`candle run` again) runs it again, like a failed job: now it is done
    assert inside.array_task(store.root, "chunk-0.txt") == 0
    assert store.state(job.id) is JobState.DONE


def test_a_run_json_without_job_timeout_reads_as_no_limit(tmp_path: Path) -> None:
    assert "job_timeout" not in OLD_RUN_JSON
    write(tmp_path / "old" / "run.json", json.dumps(OLD_RUN_JSON))
    manifest = RunStore(tmp_path / "old").manifest()
    assert manifest.job_timeout == 0.0
    assert manifest.to_record()["job_timeout"] == 0.0


HUNG_MODEL = f"""
import signal, threading


def f(params):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Event().wait({HANG})
    return {{"val_loss": 0.5}}
"""


@pytest.mark.slow
def test_an_optuna_trial_whose_job_times_out_is_told_failed(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import optuna

    from candle.adaptive.journal import open_storage
    from candle.adaptive.study import FAILED_ATTR, used_budget

    write(tmp_path / "model.py", HUNG_MODEL)
    sweep = write(tmp_path / "sweep.yaml", """
        name: hung
        benchmark: "model:f"
        search:
          method: optuna
          trials: 2
          metric: val_loss
          space: {x: {uniform: [0.0, 1.0]}}
        training: {job_timeout: 1}
        resources: {max_concurrent: 2}
        retries: 0
    """)
    result = cli("run", str(sweep))
    assert result.code == 1, result.err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="hung", storage=open_storage(
        tmp_path / "runs" / "hung", writer=False))
    assert used_budget(study) == 2
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert {t.user_attrs[FAILED_ATTR] for t in study.trials} == {
        "killed after job_timeout 1 s (attempt 1 of 1)"}
