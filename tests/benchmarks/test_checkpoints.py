"""Checkpoints of the built-ins (issue 18): weights plus optimizer state only where it
matters, at most every ``ckpt_every`` and always on a drain, and a done job keeps its final
model only. A drained and resumed job ends with exactly the weights of one run straight
through (on one training row and without dropout: a resume restores the weights and the
optimizer's state, not the random streams of shuffling and dropout)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle.api import TrainContext
from candle.benchmark import get_benchmark
from candle_benchmarks._keras import final_state

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_ckpt_every_values() -> None:
    from candle_benchmarks._keras import checkpoint_interval

    assert checkpoint_interval("auto") == ("auto", 0.0)
    assert checkpoint_interval(1) == ("epochs", 1.0)
    assert checkpoint_interval("0") == ("epochs", 0.0)
    assert checkpoint_interval("300s") == ("seconds", 300.0)
    for bad in ("", "-1", "0s", "1.5", "fast"):
        with pytest.raises(ValueError, match="ckpt_every"):
            checkpoint_interval(bad)


def test_when_a_checkpoint_is_due(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from candle_benchmarks import _keras

    every2 = _keras.Checkpoints(tmp_path, 1, "2")
    assert [every2.due(e) for e in (1, 2)] == [False, True]
    every2.last_epoch = 2
    assert [every2.due(e) for e in (3, 4)] == [False, True]
    assert not any(_keras.Checkpoints(tmp_path, 1, "0").due(e) for e in range(1, 9))
    now = [1000.0]
    monkeypatch.setattr(_keras.time, "monotonic", lambda: now[0])
    seconds = _keras.Checkpoints(tmp_path, 1, "60s")
    now[0] += 59
    assert not seconds.due(1)
    now[0] += 1
    assert seconds.due(2)
    auto = _keras.Checkpoints(tmp_path, 1, "auto")
    auto.expected_bytes = int(_keras.ASSUMED_WRITE_BYTES_PER_S)  # a first save guessed at 1 s
    now[0] += 48
    assert not auto.due(1)  # 1 s of saving in 49 s would be over 2%
    now[0] += 7
    assert auto.due(2)
    auto.saves, auto.save_seconds, auto.spent = 1, 2.0, 2.0  # it took 2 s
    now[0] += 45  # 100 s in all
    assert not auto.due(3)  # 4 s of saving in 102 s: over 2%
    now[0] += 110
    assert auto.due(4)


def tiny_fit(job_dir: Path, optimizer: str, every: str, stop_after: int | None = None
             ) -> dict[str, Any]:
    """A 2-layer model on one training row (shuffling changes nothing, so two runs can
    agree bit for bit); ``stop_after``: a drain (SIGUSR1) requested at that epoch's end."""
    from candle.job import interrupt
    from candle_benchmarks._keras import Arrays, configure_tensorflow, fit, make_optimizer

    ctx = TrainContext(job_dir=job_dir, seed=3)
    tf = configure_tensorflow(ctx)
    params = {**get_benchmark("nt3").defaults(), "epochs": 6, "optimizer": optimizer,
              "learning_rate": 0.05, "batch_size": 1, "ckpt_every": every,
              "reduce_lr_patience": 2, "reduce_lr_min_delta": 1e6}  # the lr is cut too
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(4, "relu"),
                                 tf.keras.layers.Dense(2, "softmax")])
    model.compile(optimizer=make_optimizer(tf, params), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 8)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 1]]

    class Drain(tf.keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch + 1 == stop_after:
                interrupt._requested = signal.SIGUSR1

    if stop_after is not None:
        params["_extra_callbacks"] = [Drain()]
    try:
        return fit(tf, model, Arrays(x[:1], y[:1], x[1:], y[1:]), params, ctx)
    finally:
        interrupt._requested = None


def final_weights(job_dir: Path) -> list[Any]:
    import tensorflow as tf

    weights: list[Any] = tf.keras.models.load_model(job_dir / "ckpt" / "model.keras",
                                                    compile=False).get_weights()
    return weights


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_drained_job_resumes_bit_exactly(tmp_path: Path, optimizer: str) -> None:
    from candle.api import Interrupted

    straight = tiny_fit(tmp_path / "straight", optimizer, "auto")
    assert straight["model_file"] == "ckpt/model.keras"
    # ckpt_every=0: no periodic checkpoint, yet the drain after epoch 3 saves one.
    with pytest.raises(Interrupted):
        tiny_fit(tmp_path / "drained", optimizer, "0", stop_after=3)
    ckpt = tmp_path / "drained" / "ckpt"
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 3 and state["file"] == "epoch-0003.weights.npz"
    # Adam's moments matter; SGD at momentum 0 has nothing worth keeping.
    assert (state["optimizer"] is not None) == (optimizer == "adam")
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(
        ["state.json", "epoch-0003.weights.npz"]
        + (["epoch-0003.optimizer.npz"] if optimizer == "adam" else []))
    resumed = tiny_fit(tmp_path / "drained", optimizer, "0")
    assert resumed["resumed_from_epoch"] == 3 and resumed["epochs_run"] == 3
    assert resumed["history"] == straight["history"]
    assert resumed["learning_rate_used"] == straight["learning_rate_used"]
    for a, b in zip(final_weights(tmp_path / "straight"), final_weights(tmp_path / "drained"),
                    strict=True):
        assert np.array_equal(a, b)
    # Done: the final model (no optimizer state), its state inside it, nothing else.
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.keras"]
    done = final_state(ckpt) or {}
    assert done["final"] and done["file"] == "model.keras" and done["epoch"] == 6


def test_checkpoints_follow_ckpt_every(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    from candle_benchmarks import _keras

    saved: list[int] = []
    real = _keras.Checkpoints.save

    def spy(self: Any, model: Any, epoch: int, history: Any) -> None:
        saved.append(epoch)
        real(self, model, epoch, history)

    monkeypatch.setattr(_keras.Checkpoints, "save", spy)
    tiny_fit(tmp_path / "every2", "adam", "2")
    assert saved == [2, 4]  # not after the last epoch: the final model is saved instead
    saved.clear()
    tiny_fit(tmp_path / "hour", "adam", "3600s")
    assert saved == []
    started = time.monotonic()
    tiny_fit(tmp_path / "auto", "adam", "auto")
    assert saved[0] == 1 and time.monotonic() - started < 60
