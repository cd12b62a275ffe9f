"""Walltime, warning signals and drains on the local scheduler: jobs checkpoint at an
epoch end, stop as `interrupted`, and the next run resumes them with no epoch trained
twice. Real processes (`candle run`, `python -m candle.job`), cheap user models; the NT3
test trains a real (tiny) Keras model."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from candle.launch.local import LocalLauncher
from candle.plan.jobs import iter_jobs
from candle.spec import load_sweep
from candle.state import JobState
from candle.store import RunStore
from candle.supervisor.estimate import DURATIONS, size_key
from candle.supervisor.loop import Supervisor
from candle.supervisor.run import run_meta
from candle.supervisor.slots import Node, SlotPool
from tests.conftest import ROOT, candle_cmd, write

pytestmark = pytest.mark.slow

EPOCH_MODEL = '''
import json, os, time
from pathlib import Path

import candle


def objective(params):
    """Trains `epochs` epochs of `epoch_s` seconds, saving its state before each report."""
    job_dir = Path(params["job_dir"])
    state = job_dir / "state.json"
    start = json.loads(state.read_text())["epoch"] if state.exists() else 0
    for epoch in range(start + 1, params["epochs"] + 1):
        time.sleep(params["epoch_s"])
        with open(job_dir / "epochs.log", "a") as log:
            log.write(f"{epoch}\\n")
        tmp = job_dir / "state.tmp"
        tmp.write_text(json.dumps({"epoch": epoch}))
        os.replace(tmp, state)
        candle.report(epoch, {"val_loss": 1.0 / epoch})
    return {"val_loss": 1.0 / params["epochs"], "resumed_from": start}
'''


def epoch_sweep(tmp_path: Path, points: int, *, epochs: int, epoch_s: float,
                walltime: str | None = None, lead: int | None = None,
                concurrent: int = 2) -> Path:
    write(tmp_path / "model.py", EPOCH_MODEL)
    resources: dict[str, Any] = {"scheduler": "local", "max_concurrent": concurrent}
    if walltime:
        resources["walltime"] = walltime
    if lead is not None:
        resources["signal_lead"] = lead
    sweep = {
        "name": "wall", "benchmark": "model:objective",
        "params": {"epochs": epochs, "epoch_s": epoch_s},
        "search": {"method": "list", "points": [{"x": i} for i in range(points)],
                   "metric": "val_loss"},
        "resources": resources, "retries": 0, "store": "runs",
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(sweep))
    return path


def run(sweep: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(candle_cmd("run", str(sweep)), capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def epochs_logged(store: RunStore, job_id: str) -> list[int]:
    return [int(x) for x in (store.job_dir(job_id) / "epochs.log").read_text().split()]


def test_local_walltime_drains_and_the_next_runs_resume_without_repeating(
        tmp_path: Path) -> None:
    # 3 jobs of 12 x 0.5 s, two at a time, in "allocations" of 8 s that drain 4 s early:
    # no run can finish everything, each later run resumes from the checkpoints.
    sweep = epoch_sweep(tmp_path, 3, epochs=12, epoch_s=0.5, walltime="00:00:08", lead=4)
    codes = []
    for _ in range(8):
        proc = run(sweep)
        codes.append(proc.returncode)
        if proc.returncode == 0:
            break
        assert proc.returncode == 75, proc.stderr
        assert "stopped early (the walltime)" in proc.stderr
        assert "run the same command again" in proc.stderr
    assert codes[0] == 75 and codes[-1] == 0, codes
    store = RunStore(tmp_path / "runs" / "wall")
    resumed = 0
    for job in store.jobs():
        result = store.result(job.id)
        assert result is not None and result["status"] == "done"
        assert epochs_logged(store, job.id) == list(range(1, 13))  # none twice, none lost
        resumed += bool(result["metrics"]["resumed_from"])
        for earlier in _attempts(store, job.id):  # each stop is recorded, as interrupted
            assert earlier["status"] == "interrupted"
    assert resumed >= 1


def _attempts(store: RunStore, job_id: str) -> list[dict[str, Any]]:
    path = store.job_dir(job_id) / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigusr1_to_the_supervisor_drains_then_the_run_continues(tmp_path: Path) -> None:
    sweep = epoch_sweep(tmp_path, 2, epochs=30, epoch_s=0.2)
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = RunStore(tmp_path / "runs" / "wall")
    deadline = time.time() + 60
    while time.time() < deadline:  # both jobs are past epoch 3
        logs = list((tmp_path / "runs" / "wall" / "jobs").glob("*/epochs.log"))
        if len(logs) == 2 and all(len(p.read_text().split()) >= 3 for p in logs):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert "draining: SIGUSR1" in err
    states = {store.state(j.id) for j in store.jobs()}
    assert states == {JobState.INTERRUPTED}
    stopped_at = {j.id: (store.result(j.id) or {})["interrupted_at_step"] for j in store.jobs()}
    assert all(3 <= step < 30 for step in stopped_at.values())
    again = run(sweep)
    assert again.returncode == 0, again.stderr
    for job in store.jobs():
        result = store.result(job.id) or {}
        assert result["metrics"]["resumed_from"] == stopped_at[job.id]
        assert epochs_logged(store, job.id) == list(range(1, 31))


def test_a_job_the_remaining_walltime_cannot_finish_is_not_started(tmp_path: Path) -> None:
    sweep_file = epoch_sweep(tmp_path, 2, epochs=2, epoch_s=0.1)
    sweep = load_sweep(sweep_file)
    store = RunStore(sweep.run_dir)
    store.initialise(sweep.text, run_meta(sweep), iter_jobs(sweep))
    big, small = list(store.jobs())
    # Jobs of `big`'s size took 30 s before; of a 2-minute allocation 10 s are left: it
    # must not start. Nothing is known of `small`'s size, so the longest job seen (30 s) is
    # its estimate too.
    (store.root / DURATIONS).write_text(json.dumps({"key": size_key(big), "seconds": 30.0,
                                                    "job": "earlier"}) + "\n")
    notices: list[str] = []
    supervisor = Supervisor(store, LocalLauncher(), pool=SlotPool([Node("localhost", 2)]),
                            deadline=time.time() + 10, began=time.time() - 110,
                            signal_lead=1, on_notice=notices.append)
    started = time.time()
    outcome = supervisor.run(store.jobs())
    assert time.time() - started < 5
    assert outcome.left and outcome.stopped_by == "walltime" and outcome.done == 0
    assert any("would not finish in the walltime left" in n for n in notices)
    assert {store.state(j.id) for j in store.jobs()} == {JobState.PENDING}
    # With time enough, both run, and each done job's duration is recorded by its size.
    outcome = Supervisor(store, LocalLauncher(), pool=SlotPool([Node("localhost", 2)]),
                         deadline=time.time() + 600, signal_lead=1).run(store.jobs())
    assert outcome.done == 2 and not outcome.left
    keys = [json.loads(line)["key"] for line in (store.root / DURATIONS).read_text().split("\n")
            if line]
    assert keys.count(size_key(small)) == 1


def test_a_job_longer_than_a_whole_allocation_is_started_anyway(tmp_path: Path) -> None:
    """Waiting for a bigger allocation would wait forever: it starts, and finishes over
    several allocations, checkpoint by checkpoint."""
    sweep = load_sweep(epoch_sweep(tmp_path, 1, epochs=2, epoch_s=0.1))
    store = RunStore(sweep.run_dir)
    store.initialise(sweep.text, run_meta(sweep), iter_jobs(sweep))
    (job,) = store.jobs()
    (store.root / DURATIONS).write_text(json.dumps({"key": size_key(job), "seconds": 300.0,
                                                    "job": "earlier"}) + "\n")
    outcome = Supervisor(store, LocalLauncher(), pool=SlotPool([Node("localhost", 1)]),
                         deadline=time.time() + 60, signal_lead=1).run(store.jobs())
    assert outcome.done == 1 and not outcome.left


def test_signal_lead_must_be_shorter_than_the_walltime(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sweep = epoch_sweep(tmp_path, 1, epochs=1, epoch_s=0, walltime="00:01:00", lead=60)
    result = cli("validate", str(sweep))
    assert result.code == 2
    assert "resources.signal_lead: 60 s is not shorter than the walltime 00:01:00" in result.err


def test_nt3_interrupted_by_sigusr1_resumes_from_its_keras_checkpoint(tmp_path: Path) -> None:
    """Real Keras training: the job saves a checkpoint at every epoch end; SIGUSR1 stops
    it at the next one; the next run trains only the remaining epochs."""
    epochs = 20
    sweep = {
        "name": "nt3wall", "benchmark": "nt3",
        "params": {"features": 400, "samples": 400, "conv": [16, 20, 1, 16, 10, 1],
                   "dense": [32, 8], "optimizer": "adam", "epochs": epochs,
                   "batch_size": 10, "ckpt_every": "1"},
        "search": {"method": "list", "points": [{"learning_rate": 0.001}],
                   "metric": "val_loss"},
        "resources": {"scheduler": "local", "max_concurrent": 1},
        "retries": 0, "store": "runs",
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(sweep))
    proc = subprocess.Popen(candle_cmd("run", str(path)), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    states = tmp_path / "runs" / "nt3wall" / "jobs"
    while time.time() < deadline:
        found = list(states.glob("*/ckpt/state.json"))
        if found and json.loads(found[0].read_text())["epoch"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    store = RunStore(tmp_path / "runs" / "nt3wall")
    (job,) = store.jobs()
    stopped = store.result(job.id) or {}
    assert stopped["status"] == "interrupted", stopped
    step = stopped["interrupted_at_step"]
    assert 2 <= step < epochs
    assert json.loads((store.job_dir(job.id) / "ckpt" / "state.json").read_text())["epoch"] == step
    again = run(path)
    assert again.returncode == 0, again.stderr
    result = store.result(job.id) or {}
    assert result["resumed_from_epoch"] == step
    assert result["epochs_run"] == epochs - step
    assert len(result["history"]["loss"]) == epochs  # the first run's epochs, then the rest


def test_fail_fast_stops_the_sweep_at_the_first_failure(tmp_path: Path) -> None:
    doc = json.loads(epoch_sweep(tmp_path, 4, epochs=40, epoch_s=0.2).read_text())
    write(tmp_path / "model.py", EPOCH_MODEL + '''

def failing(params):
    if params["x"] == 0:
        time.sleep(1.0)
        raise RuntimeError("bad point")
    return objective(params)
''')
    doc["benchmark"] = "model:failing"
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(doc))
    proc = subprocess.run(candle_cmd("run", str(path), "--fail-fast"), capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "a job failed and --fail-fast is set" in proc.stderr
    assert "stopped early (--fail-fast)" in proc.stderr
    store = RunStore(tmp_path / "runs" / "wall")
    states = sorted(store.state(j.id).value for j in store.jobs())
    # x=0 failed; x=1 ran beside it and stopped at a checkpoint; x=2, x=3 never started
    assert states == ["failed", "interrupted", "pending", "pending"], states
    without = run(path)  # without the flag the rest runs (and x=0 fails again)
    assert without.returncode == 1
    assert sorted(store.state(j.id).value for j in store.jobs()) == [
        "done", "done", "done", "failed"]


OPTUNA_SWEEP = {
    "name": "wall", "benchmark": "model:objective",
    "params": {"epochs": 10, "epoch_s": 0.6},  # 6 s a job: more than one 4-s allocation
    "search": {"method": "optuna", "trials": 6, "seed": 3, "metric": "val_loss",
               "space": {"x": {"uniform": [0.0, 1.0]}}},
    "resources": {"scheduler": "local", "max_concurrent": 2, "walltime": "00:00:07",
                  "signal_lead": 3},
    "retries": 0, "store": "runs",
}


def test_an_optuna_search_cut_by_walltimes_uses_its_budget_exactly(tmp_path: Path) -> None:
    """Trials whose jobs stop at a drain are not told; the next run re-asks them with the
    same key, so their jobs (same ids) resume from the checkpoint."""
    write(tmp_path / "model.py", EPOCH_MODEL)
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(OPTUNA_SWEEP))
    codes = []
    for _ in range(20):
        proc = run(path)
        codes.append(proc.returncode)
        if proc.returncode != 75:
            break
    assert codes[0] == 75 and codes[-1] == 0, codes
    import optuna

    from candle.adaptive.study import read_study, used_budget

    store = RunStore(tmp_path / "runs" / "wall")
    study = read_study(store.root, "wall")
    assert used_budget(study) == 6
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 6
    assert any(j for j in store.jobs() if (store.result(j.id) or {}).get("metrics", {}).get(
        "resumed_from"))
    for job in store.jobs():
        if store.state(job.id) is JobState.DONE:
            assert epochs_logged(store, job.id) == list(range(1, 11))
