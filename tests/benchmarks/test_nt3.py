"""NT3: the upstream architecture, learnable synthetic data, checkpoint/resume."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from candle.benchmark import TrainContext, get_benchmark
from candle_benchmarks.nt3.data import synthesize
from tests.conftest import ROOT, candle_cmd

SMALL = {"features": 400, "samples": 400, "conv": [16, 20, 1, 16, 10, 1], "dense": [32, 8],
         "optimizer": "adam", "learning_rate": 0.001, "epochs": 8, "batch_size": 10}


def params(**over: object) -> dict[str, object]:
    return {**get_benchmark("nt3").defaults(), **SMALL, **over}


def upstream_nt3_count(width: int, classes: int = 2) -> int:
    """Layer arithmetic of upstream nt3_baseline_keras2.py at its default sizes."""
    conv1 = 20 * 1 * 128 + 128            # Conv1D(128, 20)
    len1 = width - 20 + 1                 # valid, stride 1; MaxPool1D(1) keeps it
    conv2 = 10 * 128 * 128 + 128          # Conv1D(128, 10)
    len2 = (len1 - 10 + 1) // 10          # MaxPool1D(10)
    dense1 = len2 * 128 * 200 + 200
    dense2 = 200 * 20 + 20
    out = 20 * classes + classes
    return conv1 + conv2 + dense1 + dense2 + out


def test_synthetic_data_is_seeded_and_shaped() -> None:
    x1, y1 = synthesize(params(rng_seed=3))
    x2, y2 = synthesize(params(rng_seed=3))
    x3, _ = synthesize(params(rng_seed=4))
    assert x1.shape == (400, 400) and x1.dtype == np.float32
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert set(np.unique(y1)) == {0, 1} and abs(y1.mean() - 0.5) < 0.05
    # not trivial: no single gene separates the classes
    best_single = max(abs(np.corrcoef(x1[:, g], y1)[0, 1]) for g in range(x1.shape[1]))
    assert best_single < 0.9


@pytest.mark.slow
def test_parameter_count_matches_upstream_at_default_width(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("train", "nt3", "--summary")
    assert result.code == 0, result.err
    expected = upstream_nt3_count(60483)
    assert expected == 154_922_918
    assert f"nt3: {expected:,} parameters" in result.out


@pytest.mark.slow
@pytest.mark.integration
def test_trains_well_above_chance(tmp_path: Path) -> None:
    from candle_benchmarks.nt3.train import train

    out = train(params(), TrainContext(job_dir=tmp_path, seed=1))
    assert out["metrics"]["val_accuracy"] > 0.75
    assert set(out["metrics"]) == set(get_benchmark("nt3").metrics)  # what a sweep may select
    assert len(out["history"]["val_loss"]) == 8
    assert out["history"]["loss"][-1] < out["history"]["loss"][0]


@pytest.mark.slow
@pytest.mark.integration
def test_killed_training_resumes_at_the_next_epoch(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    args = ["train", "nt3", "--out", str(job_dir), "--set=ckpt_every=1",
            *(f"--set={k}={json.dumps(v)}" for k, v in params(epochs=6).items() if k in SMALL)]
    proc = subprocess.Popen(candle_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    state = job_dir / "ckpt" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert 2 <= killed_at < 6, "the job finished before it could be killed"
    assert not (job_dir / "result.json").exists()
    again = subprocess.run(candle_cmd(*args), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    epochs_seen = [line for line in again.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs_seen[0].startswith(f"epoch {killed_at + 1}/6")
    result = json.loads((job_dir / "result.json").read_text())
    assert result["resumed_from_epoch"] == killed_at
    assert result["epochs_run"] == 6 - killed_at
    assert len(result["history"]["loss"]) == 6
    # Done: the final model, which the result names (its state inside it); no more.
    assert result["model_file"] == "ckpt/model.keras"
    assert sorted(p.name for p in (job_dir / "ckpt").iterdir()) == ["model.keras"]


@pytest.mark.slow
@pytest.mark.integration
def test_restart_modes(tmp_path: Path) -> None:
    from candle_benchmarks.nt3.train import train

    tiny = params(epochs=2, features=120, samples=60, conv=[4, 20, 1, 4, 10, 1], dense=[4, 2])
    with pytest.raises(RuntimeError, match="ckpt_restart_mode=required but no checkpoint"):
        train({**tiny, "ckpt_restart_mode": "required"}, TrainContext(job_dir=tmp_path, seed=1))
    first = train(tiny, TrainContext(job_dir=tmp_path, seed=1))
    assert first["resumed_from_epoch"] == 0 and first["epochs_run"] == 2
    more = train({**tiny, "epochs": 3, "ckpt_restart_mode": "required"},
                 TrainContext(job_dir=tmp_path, seed=1))
    assert more["resumed_from_epoch"] == 2 and more["epochs_run"] == 1
    fresh = train({**tiny, "ckpt_restart_mode": "off"}, TrainContext(job_dir=tmp_path, seed=1))
    assert fresh["resumed_from_epoch"] == 0 and fresh["epochs_run"] == 2
