"""Horovod data parallelism inside a job: real `mpirun -np 2`, real Horovod, real NT3
training through the real supervisor. The evidence that the allreduce happened is in the
job's result: both ranks end with the same weights although each trained on its own half
of the data, and the reported metrics are the average of the ranks' different local ones."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from candle.store import RunStore
from candle.store.atomic import atomic_write_json
from candle_benchmarks._keras import final_state
from tests.conftest import run_candle

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SMALL = {"data": "synthetic", "features": 400, "samples": 800, "conv": [16, 20, 1, 16, 10, 1],
         "dense": [32, 8], "optimizer": "adam", "epochs": 5, "rng_seed": 11}


def run_one(tmp_path: Path, name: str, ranks: int,
            **params: Any) -> tuple[RunStore, dict[str, Any]]:
    doc = {"name": name, "benchmark": "nt3", "params": {**SMALL, **params},
           "search": {"method": "list", "points": [{}], "metric": "val_loss"},
           "resources": {"scheduler": "local", "ranks_per_job": ranks}, "retries": 0,
           "store": str(tmp_path / "runs")}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / name)
    (job,) = store.jobs()
    result = store.result(job.id)
    assert result is not None and result["status"] == "done", result
    return store, result


def test_two_ranks_stay_in_lock_step_and_average_metrics(tmp_path: Path) -> None:
    store, result = run_one(tmp_path, "hvd2", 2, batch_size=10, learning_rate=0.0005)
    (job,) = store.jobs()
    assert "mpirun -np 2" in store.log_path(job.id).read_text()
    hvd = result["horovod"]
    assert hvd["size"] == 2 and result["ranks"] == 2
    ranks = sorted(hvd["ranks"], key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["weights"] == ranks[1]["weights"], "weights diverged: no allreduce"
    local = [r["local_metrics"] for r in ranks]
    assert local[0]["loss"] != local[1]["loss"]  # different shards, different local losses
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert result["metrics"][key] == pytest.approx((local[0][key] + local[1][key]) / 2,
                                                       rel=1e-5), key
    assert result["learning_rate_used"] == pytest.approx(0.001)  # scaled by 2 ranks
    assert result["train_samples"] == 640  # 800 samples, 20% held out, both shards
    # Only rank 0 wrote: one result, one final model (the log holds both ranks' output).
    ckpt = store.job_dir(job.id) / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.keras"]

    # Resume under Horovod: pretend the job died after epoch 4 (the final model standing in
    # for its weights); every rank must load the checkpoint rank 0 chose and stay in
    # lock-step. (tests/benchmarks/test_checkpoints.py: optimizer state, exactness.)
    state = final_state(ckpt) or {}
    history = {k: v[:4] for k, v in state["history"].items()}
    os.replace(ckpt / "model.keras", ckpt / "epoch-0004.keras")  # no final state: plain
    atomic_write_json(ckpt / "state.json", {"epoch": 4, "file": "epoch-0004.keras",
                                            "history": history})
    (store.job_dir(job.id) / "result.json").unlink()
    proc = run_candle("run", str(tmp_path / "hvd2.yaml"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resumed = store.result(job.id)
    assert resumed is not None and resumed["status"] == "done"
    assert resumed["resumed_from_epoch"] == 4 and resumed["epochs_run"] == 1
    digests = {r["weights"] for r in resumed["horovod"]["ranks"]}
    assert len(digests) == 1
    assert len(resumed["history"]["val_loss"]) == 5


def test_one_and_two_ranks_of_the_same_seed_learn_alike(tmp_path: Path) -> None:
    """Same global batch (20) and effective learning rate (0.001) on 1 and on 2 ranks."""
    _, one = run_one(tmp_path, "one", 1, batch_size=20, learning_rate=0.001)
    _, two = run_one(tmp_path, "two", 2, batch_size=10, learning_rate=0.0005)
    assert "horovod" not in one
    chance = 0.693  # ln 2: two balanced classes
    for result in (one, two):
        assert result["metrics"]["val_loss"] < 0.5 * chance, result["metrics"]
    assert abs(one["metrics"]["val_loss"] - two["metrics"]["val_loss"]) < 0.15


def test_a_drained_two_rank_job_checkpoints_and_resumes(tmp_path: Path) -> None:
    """SIGUSR1 to `candle run` with ckpt_every=0 (no periodic checkpoint): both ranks stop
    at the same epoch end, rank 0 saves the weights and Adam's state first (the other rank
    waits for it), and the next run trains only the remaining epochs, in lock-step."""
    import signal
    import subprocess
    import time

    from tests.conftest import ROOT, candle_cmd

    epochs = 40
    doc = {"name": "drain", "benchmark": "nt3",
           "params": {**SMALL, "epochs": epochs, "batch_size": 10, "ckpt_every": "0",
                      "verbose": 2},
           "search": {"method": "list", "points": [{}], "metric": "val_loss"},
           "resources": {"scheduler": "local", "ranks_per_job": 2}, "retries": 0,
           "store": str(tmp_path / "runs")}
    path = tmp_path / "drain.yaml"
    path.write_text(json.dumps(doc))
    proc = subprocess.Popen(candle_cmd("run", str(path)), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = RunStore(tmp_path / "runs" / "drain")
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            jobs = list(store.jobs())
        except (OSError, ValueError):  # not planned yet
            jobs = []
        log = store.log_path(jobs[0].id) if jobs else None
        if log is not None and log.is_file() and "Epoch 3/" in log.read_text():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 75, err
    (job,) = store.jobs()
    stopped = store.result(job.id) or {}
    assert stopped["status"] == "interrupted", stopped
    step = stopped["interrupted_at_step"]
    assert 3 <= step < epochs
    ckpt = store.job_dir(job.id) / "ckpt"
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == step and (ckpt / state["optimizer"]).is_file()
    again = run_candle("run", str(path), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    result = store.result(job.id) or {}
    assert result["resumed_from_epoch"] == step and result["epochs_run"] == epochs - step
    assert len({r["weights"] for r in result["horovod"]["ranks"]}) == 1
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.keras"]
