"""Walltime warnings, continuations, preemption and TIMEOUT against a REAL Slurm (the
session's `live_slurm` fixture: 4 emulated nodes, slurmdbd + MariaDB).

The jobs are a user model that trains `epochs` epochs of `epoch_s` seconds, saving its
state before each `candle.report` call, and logging each epoch it trains: a resumed job
must log every epoch exactly once in total."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from candle.store import RunStore
from tests.chaos.test_walltime import EPOCH_MODEL, epochs_logged
from tests.conftest import ROOT, candle_cmd, run_candle, write

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def epoch_sweep(tmp_path: Path, name: str, *, points: int, epochs: int, epoch_s: float,
                **resources: Any) -> Path:
    write(tmp_path / "model.py", EPOCH_MODEL)
    doc = {
        "name": name, "benchmark": "model:objective",
        "params": {"epochs": epochs, "epoch_s": epoch_s},
        "search": {"method": "list", "points": [{"x": i} for i in range(points)],
                   "metric": "val_loss"},
        "resources": {"scheduler": "slurm", "site": str(ROOT / "configs" / "local-slurm.yaml"),
                      "walltime": "00:10:00", **resources},
        "retries": 0, "store": str(tmp_path / "runs"),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(doc))
    return path


def submissions(store: RunStore) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (store.root / "slurm" / "submissions.json").read_text())
    return data


def wait_until_epoch(store: RunStore, jobs: int, epoch: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = list((store.root / "jobs").glob("*/epochs.log"))
        if len(logs) >= jobs and all(len(p.read_text().split()) >= epoch for p in logs):
            return
        time.sleep(0.5)
    raise AssertionError(f"{jobs} job(s) never reached epoch {epoch}")


def slurm_id(name: str) -> str:
    out = subprocess.run(["squeue", "-h", "-n", f"candle-{name}", "-o", "%i"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.split()[0]


def assert_all_done_once(store: RunStore, epochs: int) -> list[dict[str, Any]]:
    results = [store.result(job.id) or {} for job in store.jobs()]
    assert results and all(r.get("status") == "done" for r in results), results
    for job in store.jobs():
        assert epochs_logged(store, job.id) == list(range(1, epochs + 1))
    return results


def follow(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(candle_cmd("run", str(path), "--wait"), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_walltime_warning_drains_and_a_continuation_finishes(live_slurm: None,
                                                             tmp_path: Path) -> None:
    """The warning is what `--signal=B:USR1@lead` sends to the batch shell; here it is sent
    by hand (`scancel --batch --signal=USR1`) so the test does not wait for a walltime."""
    path = epoch_sweep(tmp_path, "cont", points=3, epochs=30, epoch_s=0.5, nodes=2,
                       signal_lead=300)
    follower = follow(path)
    store = RunStore(tmp_path / "runs" / "cont")
    wait_until_epoch(store, jobs=3, epoch=3)
    first = slurm_id("cont")
    subprocess.run(["scancel", "--batch", "--signal=USR1", first], check=True, timeout=30)
    out, err = follower.communicate(timeout=400)
    assert follower.returncode == 0, out + err
    results = assert_all_done_once(store, 30)
    assert all(r["metrics"]["resumed_from"] >= 3 for r in results)
    records = submissions(store)
    assert [r["after"] for r in records] == ["", first]  # one continuation, chained
    script = (store.root / "slurm" / "pack.sbatch").read_text()
    assert "#SBATCH --signal=B:USR1@300" in script and "#SBATCH --requeue" in script
    log = (store.root / "slurm" / f"pack-{first}.out").read_text()
    assert "draining: SIGUSR1" in log and f"continuation {records[1]['job_id']}" in log
    sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-j", first, "-o", "State"],
                           capture_output=True, text=True, timeout=30).stdout
    assert "COMPLETED" in sacct  # drained cleanly, not killed


def test_preempted_pack_and_warned_array_task_are_requeued_and_resume(
        live_slurm: None, tmp_path: Path) -> None:
    """`scontrol requeue` is what a preemption with PreemptMode=REQUEUE (or a NODE_FAIL of
    a --requeue job) does: SIGTERM, then the same job id runs again. An array task warned
    of its walltime requeues itself. Both start again after Slurm's requeue delay (~2 min)
    and resume from their checkpoints."""
    pack = epoch_sweep(tmp_path, "pre", points=2, epochs=30, epoch_s=0.5, nodes=2)
    array = epoch_sweep(tmp_path, "arr", points=2, epochs=30, epoch_s=0.5, mode="array")
    followers = [follow(pack), follow(array)]
    pre, arr = RunStore(tmp_path / "runs" / "pre"), RunStore(tmp_path / "runs" / "arr")
    wait_until_epoch(pre, jobs=2, epoch=3)
    wait_until_epoch(arr, jobs=2, epoch=3)
    subprocess.run(["scontrol", "requeue", slurm_id("pre")], check=True, timeout=30)
    task = slurm_id("arr")  # squeue names array tasks <array id>_<index>
    subprocess.run(["scancel", "--batch", "--signal=USR1", task], check=True, timeout=30)
    for follower in followers:
        out, err = follower.communicate(timeout=500)
        assert follower.returncode == 0, out + err
    resumed = [r["metrics"]["resumed_from"] for r in assert_all_done_once(pre, 30)]
    assert all(step >= 3 for step in resumed)
    resumed = sorted(r["metrics"]["resumed_from"] for r in assert_all_done_once(arr, 30))
    assert resumed[0] == 0 and resumed[1] >= 3  # only the warned task was cut and resumed
    assert len(submissions(pre)) == 1 and len(submissions(arr)) == 1  # same ids came back
    restarts = subprocess.run(["scontrol", "show", "job", task], capture_output=True,
                              text=True, timeout=30).stdout
    assert "Restarts=1" in restarts


def test_a_timeout_job_resumes_from_its_checkpoint(live_slurm: None, tmp_path: Path) -> None:
    """No warning (signal_lead 0): Slurm kills the task at its walltime (TIMEOUT). The job
    had saved a checkpoint every epoch; `candle run` again resumes it from there."""
    path = epoch_sweep(tmp_path, "timeout", points=1, epochs=100, epoch_s=1.0, mode="array",
                       walltime="00:01:00", signal_lead=0)
    first = run_candle("run", str(path), "--wait", timeout=400)
    assert first.returncode == 1, first.stdout + first.stderr  # the job did not finish
    store = RunStore(tmp_path / "runs" / "timeout")
    status = json.loads(run_candle("status", str(store.root), "--format", "json").stdout)
    assert status["batch"][0]["states"] == {"TIMEOUT": 1}
    (job,) = store.jobs()
    assert status["notes"][job.id].startswith("TIMEOUT")
    cut = len(epochs_logged(store, job.id))
    assert 30 <= cut < 100
    again = run_candle("run", str(path), "--wait", timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    (result,) = assert_all_done_once(store, 100)
    assert result["metrics"]["resumed_from"] == cut
