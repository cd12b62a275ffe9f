"""Training controls in the built-ins, with real (tiny) TensorFlow trainings: early stopping
(also across a resume), ReduceLROnPlateau from the params, the lr log, the model file and
data digest a result names, and Horovod's learning-rate warm-up on 2 real ranks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle.api import TrainContext, atomic_write_json
from candle.benchmark import get_benchmark
from candle.job.runner import execute
from candle.plan.jobs import Job
from candle.store import RunStore
from candle_benchmarks._keras import final_state
from tests.conftest import run_candle

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY_CONV = {"features": 60, "samples": 100, "conv": [4, 5, 1], "pool": [1], "dense": [8],
             "optimizer": "adam", "learning_rate": 0.001, "batch_size": 16}
# Nothing counts as an improvement: the best epoch is the first, and patience runs out.
NEVER_BETTER = 1e6


def params(name: str, **over: Any) -> dict[str, Any]:
    tiny: dict[str, Any] = dict(TINY_CONV)
    if name == "tc1":
        tiny["classes"] = 3
    if name == "p1b3":
        tiny = {"cells": 12, "drugs": 8, "cell_features": 40, "drug_features": 20,
                "dense": [16, 8], "batch_size": 16, "optimizer": "adam"}
    return {**get_benchmark(name).defaults(), **tiny, **over}


def train(name: str, job_dir: Path, **over: Any) -> dict[str, Any]:
    module = __import__(f"candle_benchmarks.{name}.train", fromlist=["train"])
    result: dict[str, Any] = module.train(params(name, **over), TrainContext(job_dir=job_dir,
                                                                          seed=1))
    return result


def test_nt3_early_stopping_ends_the_job_done_with_its_best_epoch(tmp_path: Path) -> None:
    job = Job(id="es", point=0, point_params={}, params=params(
        "nt3", epochs=8, early_stopping_patience=2, early_stopping_min_delta=NEVER_BETTER),
        fold=None, folds=None, replica=0, seed=1)
    record = execute(job, "nt3", tmp_path, tmp_path, metrics=("val_loss",))
    assert record["status"] == "done", record.get("error")
    assert record["best_epoch"] == 1 and record["stopped_early_at"] == 3
    assert len(record["history"]["val_loss"]) == 3 and record["epochs_run"] == 3
    assert set(record["metrics"]) == set(get_benchmark("nt3").metrics)
    # The model as trained at the end, relative to the job directory, and the data's digest.
    assert record["model_file"] == "ckpt/model.keras"
    assert (tmp_path / record["model_file"]).is_file()
    from candle_benchmarks.nt3 import data

    arrays = data.load(job.params, None, None, 0, True, 2)
    expected = hashlib.sha256(arrays.x_train.tobytes() + arrays.y_train.tobytes()).hexdigest()
    assert record["data_digest"] == expected


def test_without_early_stopping_all_epochs_run(tmp_path: Path) -> None:
    result = train("nt3", tmp_path, epochs=4, early_stopping_min_delta=NEVER_BETTER)
    assert len(result["history"]["val_loss"]) == 4
    assert result["stopped_early_at"] is None and result["best_epoch"] == 1
    assert result["model_file"] == "ckpt/model.keras"


def test_a_resume_keeps_the_early_stopping_decision(tmp_path: Path) -> None:
    over = {"epochs": 8, "early_stopping_patience": 2, "early_stopping_min_delta": NEVER_BETTER}
    first = train("nt3", tmp_path, **over)
    assert first["stopped_early_at"] == 3
    # Resumed after the stop: the restored history already says stop; no more training.
    again = train("nt3", tmp_path, **over)
    assert again["resumed_from_epoch"] == 3 and again["epochs_run"] == 0
    assert again["stopped_early_at"] == 3 and again["best_epoch"] == 1
    assert len(again["history"]["val_loss"]) == 3
    # Killed after epoch 2: the counter carries over, so one more epoch and stop (Keras'
    # own EarlyStopping would start counting afresh and train two more). (A done job keeps
    # its final model only: it stands in for epoch 2's weights here.)
    ckpt = tmp_path / "ckpt"
    state = final_state(ckpt) or {}
    history = {k: v[:2] for k, v in state["history"].items()}
    os.replace(ckpt / "model.keras", ckpt / "epoch-0002.keras")  # no final state: plain
    atomic_write_json(ckpt / "state.json", {"epoch": 2, "file": "epoch-0002.keras",
                                            "history": history})
    resumed = train("nt3", tmp_path, **over)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 1
    assert resumed["stopped_early_at"] == 3 and resumed["best_epoch"] == 1


def test_tc1_reduce_lr_cuts_by_the_factor_after_patience_epochs(tmp_path: Path) -> None:
    result = train("tc1", tmp_path, epochs=5, reduce_lr_patience=2, reduce_lr_factor=0.5,
                   reduce_lr_min_delta=NEVER_BETTER)
    # epoch 1 sets the best; 2 and 3 do not improve: cut at the end of 3, again after 5.
    assert result["history"]["lr"] == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4], rel=1e-5)
    assert result["learning_rate_used"] == pytest.approx(2.5e-4, rel=1e-5)
    assert set(result["metrics"]) == set(get_benchmark("tc1").metrics)
    assert result["stopped_early_at"] is None


def test_a_resume_keeps_the_reduce_lr_decision(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped at the checkpoint of epoch 2 (a real stop request) and resumed: the lr cuts
    fall at the same epochs as in a run straight through (Keras' own ReduceLROnPlateau
    would start counting afresh on resume and cut two epochs late)."""
    import tensorflow as tf

    from candle.job import interrupt

    over = {"epochs": 5, "reduce_lr_patience": 2, "reduce_lr_factor": 0.5,
            "reduce_lr_min_delta": NEVER_BETTER}
    straight = train("tc1", tmp_path / "straight", **over)
    assert straight["history"]["lr"] == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4],
                                                      rel=1e-5)

    class StopAfterEpoch2(tf.keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch + 1 == 2:  # as SIGUSR1 would: checked after epoch 2's checkpoint
                monkeypatch.setattr(interrupt, "_requested", signal.SIGUSR1)

    with pytest.raises(interrupt.Interrupted):
        train("tc1", tmp_path / "resumed", _extra_callbacks=[StopAfterEpoch2()], **over)
    monkeypatch.setattr(interrupt, "_requested", None)
    resumed = train("tc1", tmp_path / "resumed", **over)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 3
    assert resumed["history"]["lr"] == pytest.approx(straight["history"]["lr"], rel=1e-6)
    assert resumed["learning_rate_used"] == pytest.approx(straight["learning_rate_used"],
                                                          rel=1e-6)


def test_nt3_reduce_lr_is_on_by_default_and_lr_is_logged(tmp_path: Path) -> None:
    result = train("nt3", tmp_path, epochs=3, reduce_lr_patience=1,
                   reduce_lr_min_delta=NEVER_BETTER)  # factor: the default 0.1
    assert result["history"]["lr"] == pytest.approx([1e-3, 1e-3, 1e-4], rel=1e-5)
    assert get_benchmark("nt3").defaults()["reduce_lr_patience"] == 10  # upstream


def test_p1b3_stops_early_on_a_maximised_monitor(tmp_path: Path) -> None:
    result = train("p1b3", tmp_path, epochs=6, early_stopping_patience=1,
                   early_stopping_monitor="val_r2", early_stopping_min_delta=NEVER_BETTER)
    assert result["stopped_early_at"] == 2 and result["best_epoch"] == 1
    assert set(result["metrics"]) == set(get_benchmark("p1b3").metrics)  # lr included
    assert len(result["history"]["lr"]) == 2
    assert result["model_file"] == "ckpt/model.keras"
    from candle_benchmarks.p1b3 import data

    dose = data.load(params("p1b3"), None, None, 0)
    rows = dose.train_idx
    digest = hashlib.sha256()
    for array in (dose.cell_idx[rows], dose.drug_idx[rows], dose.log_conc[rows], dose.y[rows],
                  dose.cell_x, dose.drug_x):
        digest.update(np.ascontiguousarray(array).tobytes())
    assert result["data_digest"] == digest.hexdigest()
    other = train("p1b3", tmp_path / "other", epochs=1, rng_seed=5)
    assert other["data_digest"] != result["data_digest"]


def test_two_rank_warmup_ramps_to_the_scaled_lr(tmp_path: Path) -> None:
    """Real mpirun -np 2: lr 0.0005 x 2 ranks = 0.001, reached after 2 warm-up epochs;
    ReduceLROnPlateau halves it after epoch 2 and early stopping stops after epoch 3 (rank
    0's decisions, broadcast): both ranks train alike."""
    doc = {"name": "warm", "benchmark": "nt3",
           "params": {**TINY_CONV, "samples": 160, "learning_rate": 0.0005, "batch_size": 8,
                      "epochs": 6, "rng_seed": 11},
           "training": {"warmup_epochs": 2,
                        "early_stopping": {"patience": 2, "min_delta": NEVER_BETTER},
                        "reduce_lr": {"patience": 1, "factor": 0.5,
                                      "min_delta": NEVER_BETTER}},
           "search": {"method": "list", "points": [{}], "metric": "val_loss"},
           "resources": {"scheduler": "local", "ranks_per_job": 2}, "retries": 0,
           "store": str(tmp_path / "runs")}
    path = tmp_path / "warm.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "warm")
    (job,) = store.jobs()
    result = store.result(job.id)
    assert result is not None and result["status"] == "done", result
    assert result["horovod"]["size"] == 2
    lr = result["history"]["lr"]
    # Horovod's ramp from 0.001/2: after epoch 1 of 2 it is 0.0005 * (1 * 1/2 + 1).
    assert lr[0] == pytest.approx(0.00075, rel=1e-5)
    assert lr[1:] == pytest.approx([0.001, 0.0005], rel=1e-5)  # cut at the end of epoch 2
    assert result["stopped_early_at"] == 3 and result["best_epoch"] == 1
    assert len({r["weights"] for r in result["horovod"]["ranks"]}) == 1
