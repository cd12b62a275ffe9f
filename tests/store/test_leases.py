"""Running markers with a lease. Every supervisor renews one lease file in the run
directory; a job's ``running.json`` names its supervisor. A marker written on another host
is believed only while its owner's lease is fresh: an allocation that died hard (node
failure, ``scancel --signal=KILL``) leaves its jobs ``lost`` (runnable again), not
``running`` for ever. On the marker's own host the job's pid is checked instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from candle.plan.jobs import iter_jobs
from candle.spec import load_sweep
from candle.store import RunStore
from candle.store.atomic import atomic_write_json, read_json
from candle.supervisor.run import run_meta
from tests.chaos.test_walltime import epoch_sweep, run
from tests.conftest import ROOT, candle_cmd

DEAD_OWNER = "node17-4242-0a1b2c"


def planned(tmp_path: Path, epochs: int = 3) -> tuple[RunStore, str, Path]:
    """A planned one-job run (the walltime tests' epoch model); its store, job id, sweep."""
    sweep_file = epoch_sweep(tmp_path, 1, epochs=epochs, epoch_s=0.05)
    sweep = load_sweep(sweep_file)
    store = RunStore(sweep.run_dir)
    store.initialise(sweep.text, run_meta(sweep), iter_jobs(sweep))
    (job,) = store.jobs()
    store.job_dir(job.id).mkdir(parents=True)
    return store, job.id, sweep_file


def status_json(store: RunStore) -> dict[str, Any]:
    proc = subprocess.run(candle_cmd("status", str(store.root), "--format", "json"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_a_job_whose_supervisor_lease_expired_is_lost_and_runs_again(tmp_path: Path) -> None:
    store, job_id, sweep = planned(tmp_path)
    # A pack allocation on node17 checkpointed epoch 1 of this job, then the node died:
    # its marker stays, its lease stopped being renewed an hour ago.
    atomic_write_json(store.job_dir(job_id) / "state.json", {"epoch": 1})
    atomic_write_json(store.job_dir(job_id) / "running.json",
                      {"pid": 4242, "host": "node17", "attempt": 1, "owner": DEAD_OWNER})
    atomic_write_json(store.root / "leases" / f"{DEAD_OWNER}.json",
                      {"owner": DEAD_OWNER, "host": "node17", "pid": 4242,
                       "renewed": time.time() - 3780, "expires": time.time() - 3600})
    assert store.state(job_id).value == "lost"
    status = status_json(store)
    assert status["counts"]["lost"] == 1 and status["counts"]["running"] == 0, status
    assert status["lost"] == [job_id]

    again = run(sweep)  # the supervisor runs a lost job again, from its checkpoint
    assert again.returncode == 0, again.stderr
    result = store.result(job_id) or {}
    assert result["status"] == "done" and result["metrics"]["resumed_from"] == 1
    assert not (store.job_dir(job_id) / "running.json").exists()
    # the dead allocation's lease is left (long expired: pruned); the new one is released
    assert not list((store.root / "leases").glob("*.json"))


def test_a_marker_of_a_fresh_lease_on_another_host_is_running(tmp_path: Path) -> None:
    store, job_id, _ = planned(tmp_path)
    atomic_write_json(store.job_dir(job_id) / "running.json",
                      {"pid": 4242, "host": "node17", "attempt": 1, "owner": DEAD_OWNER})
    assert store.state(job_id).value == "lost"  # no lease at all: its owner is gone
    atomic_write_json(store.root / "leases" / f"{DEAD_OWNER}.json",
                      {"owner": DEAD_OWNER, "host": "node17", "pid": 4242,
                       "renewed": time.time(), "expires": time.time() + 180})
    assert RunStore(store.root).state(job_id).value == "running"


def test_an_old_marker_without_owner_is_trusted_until_its_walltime_has_passed(
        tmp_path: Path) -> None:
    """Markers written before leases: on another host the job cannot outlive the
    allocation that started it, so one older than the walltime (+ margin) is lost."""
    store, job_id, _ = planned(tmp_path)
    meta = read_json(store.root / "run.json")
    meta["resources"].update(scheduler="slurm", walltime="00:10:00")
    atomic_write_json(store.root / "run.json", meta)
    marker = store.job_dir(job_id) / "running.json"
    atomic_write_json(marker, {"pid": 4242, "host": "node17", "attempt": 1})
    assert store.state(job_id).value == "running"
    an_hour_ago = time.time() - 3600
    os.utime(marker, (an_hour_ago, an_hour_ago))
    assert RunStore(store.root).state(job_id).value == "lost"


def test_a_same_host_marker_of_a_dead_process_is_lost(tmp_path: Path) -> None:
    store, job_id, _ = planned(tmp_path)
    child = subprocess.Popen(["true"])
    child.wait()
    store.mark_running(job_id, child.pid, 1, owner=DEAD_OWNER)
    assert store.state(job_id).value == "lost"
    store.mark_running(job_id, os.getpid(), 1, owner=DEAD_OWNER)  # alive, lease or not
    assert store.state(job_id).value == "running"


@pytest.mark.slow
def test_a_renewed_lease_outlives_its_length_and_a_killed_supervisor_loses_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `candle run` with a 1.5-s lease, read as from another node (the login node):
    its job stays running for several lease lengths while the supervisor renews, and is
    lost once the supervisor is SIGKILLed (its lease file stays, unrenewed)."""
    lease_s = 1.5
    sweep = epoch_sweep(tmp_path, 1, epochs=40, epoch_s=0.2)
    store = RunStore(tmp_path / "runs" / "wall")
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "CANDLE_LEASE_SECONDS": str(lease_s)})
    try:
        deadline = time.time() + 60
        markers: list[Path] = []
        while not markers:
            assert time.time() < deadline and proc.poll() is None, "the job never started"
            markers = list((store.root / "jobs").glob("*/running.json"))
            time.sleep(0.02)
        job_id = markers[0].parent.name
        owner = json.loads(markers[0].read_text())["owner"]
        lease = store.root / "leases" / f"{owner}.json"
        first_expiry = json.loads(lease.read_text())["expires"]

        monkeypatch.setattr("candle.store.lease.CLOCK_SKEW_SECONDS", 0.0)
        monkeypatch.setattr("candle.store.run_store.socket.gethostname", lambda: "login1")
        reader = RunStore(store.root)
        while json.loads(lease.read_text())["renewed"] < first_expiry + 2 * lease_s:
            assert proc.poll() is None and time.time() < deadline + 30
            assert reader.state(job_id).value == "running"
            time.sleep(0.05)
        assert time.time() > first_expiry + 2 * lease_s  # long past the first lease's end

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed = time.time()
        while reader.state(job_id).value != "lost":
            assert time.time() < killed + 30, "the job never turned lost"
            time.sleep(0.05)
        assert lease.exists()
        assert time.time() - killed > lease_s / 3  # lost by the lease, not at once
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status_json(store)["counts"]["lost"] == 1  # same host: its pid is checked

    again = run(sweep)
    assert again.returncode == 0, again.stderr
    result = store.result(job_id) or {}
    assert result["status"] == "done" and result["metrics"]["resumed_from"] >= 1
