"""Training controls (candle.api): the early-stopping decision and the warm-up schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from candle.api import EarlyStopping, TrainContext, keras_callbacks
from candle.job.controls import ReduceLROnPlateau, maximized, warmup_learning_rate
from candle.job.runner import train_job
from candle.job.user_model import extras_from, metrics_from
from tests.conftest import write


def feed(stopper: EarlyStopping, values: list[float]) -> int | None:
    """The epoch at which ``stopper`` says stop (None: it never does)."""
    for epoch, value in enumerate(values, start=1):
        if stopper.update(epoch, {stopper.monitor: value, "other": 0.0}):
            return epoch
    return None


def test_stops_after_patience_epochs_without_improvement() -> None:
    stopper = EarlyStopping(patience=2)
    assert feed(stopper, [1.0, 0.8, 0.9, 0.85, 0.7]) == 4  # best at 2; 3 and 4 do not improve
    assert stopper.best_epoch == 2 and stopper.best == 0.8 and stopper.stopped_epoch == 4
    assert stopper.record(epochs=10) == {"best_epoch": 2, "stopped_early_at": 4}


def test_patience_zero_never_stops_but_keeps_the_best_epoch() -> None:
    stopper = EarlyStopping(patience=0)
    assert feed(stopper, [1.0, 2.0, 3.0, 0.5, 4.0]) is None
    assert stopper.best_epoch == 4
    assert stopper.record(epochs=5) == {"best_epoch": 4, "stopped_early_at": None}


def test_min_delta_is_the_smallest_improvement_that_counts() -> None:
    values = [1.0, 0.95, 0.91, 0.88, 0.86]  # improves by < 0.1 every epoch
    assert feed(EarlyStopping(patience=2, min_delta=0.0), values) is None
    strict = EarlyStopping(patience=2, min_delta=0.1)
    assert feed(strict, values) == 3
    assert strict.best_epoch == 1
    later = EarlyStopping(patience=2, min_delta=0.1)
    assert feed(later, [1.0, 0.95, 0.89, 0.85, 0.84]) == 5  # 0.89 beats 1.0 by > 0.1
    assert later.best_epoch == 3


def test_accuracy_and_r2_monitors_are_maximised() -> None:
    assert maximized("val_accuracy") and maximized("val_r2") and maximized("acc")
    assert not maximized("val_loss") and not maximized("val_mae")
    up = EarlyStopping(patience=2, monitor="val_accuracy")
    assert feed(up, [0.5, 0.7, 0.6, 0.65, 0.9]) == 4
    assert up.best_epoch == 2
    r2 = EarlyStopping(patience=1, min_delta=0.05, monitor="val_r2")
    assert feed(r2, [0.1, 0.3, 0.32]) == 3 and r2.best_epoch == 2


def test_nan_never_improves() -> None:
    stopper = EarlyStopping(patience=2)
    assert feed(stopper, [1.0, float("nan"), float("nan")]) == 3
    assert stopper.best_epoch == 1
    assert feed(EarlyStopping(patience=2), [float("nan")] * 3) == 2


def test_replayed_history_takes_the_same_decision() -> None:
    values = [1.0, 0.8, 0.9, 0.85, 0.7]
    live = EarlyStopping(patience=2)
    feed(live, values[:3])
    resumed = EarlyStopping(patience=2)
    assert not resumed.replay({"val_loss": values[:3]})  # what a checkpoint restored
    assert resumed.update(4, {"val_loss": values[3]})  # the counter carried over
    assert resumed.best_epoch == 2 and resumed.stopped_epoch == 4
    assert EarlyStopping(patience=2).replay({"val_loss": values})


def test_from_params_uses_the_training_params_and_their_defaults() -> None:
    assert EarlyStopping.from_params({}) == EarlyStopping(0, 0.0, "val_loss")
    stopper = EarlyStopping.from_params({"early_stopping_patience": 3,
                                         "early_stopping_min_delta": 0.01,
                                         "early_stopping_monitor": "val_accuracy"})
    assert (stopper.patience, stopper.min_delta, stopper.monitor) == (3, 0.01, "val_accuracy")
    with pytest.raises(ValueError, match=">= 0"):
        EarlyStopping(patience=-1)


def test_a_missing_monitor_is_an_error_only_when_stopping_is_on() -> None:
    assert not EarlyStopping(patience=0).update(1, {"loss": 1.0})
    with pytest.raises(KeyError, match="monitors 'val_loss', but the epoch's metrics are: loss"):
        EarlyStopping(patience=2).update(1, {"loss": 1.0})


def run_plateau(reducer: ReduceLROnPlateau, values: list[float], lr: float,
                history: dict[str, list[float]]) -> float:
    """Feed epochs as training would: log the rate each trained at, cut it at the end."""
    for value in values:
        history.setdefault("val_loss", []).append(value)
        history.setdefault("lr", []).append(lr)
        lr = reducer.update({"val_loss": value}, lr) or lr
    return lr


def test_reduce_lr_on_plateau_has_keras_semantics() -> None:
    reducer = ReduceLROnPlateau(patience=2, factor=0.5, min_delta=0.05)
    history: dict[str, list[float]] = {}
    lr = run_plateau(reducer, [1.0, 0.97, 0.9, 0.89, 0.88, 0.87, float("nan"), 0.5], 0.1,
                     history)
    # 0.97 is not 0.05 better than 1.0; 0.9 is; 0.89 and 0.88 are not: cut at 5; 0.87 and
    # NaN: cut at 7; 0.5 improves.
    assert history["lr"] == pytest.approx([0.1] * 5 + [0.05] * 2 + [0.025])
    assert lr == pytest.approx(0.025) and reducer.best == 0.5 and reducer.wait == 0
    floor = ReduceLROnPlateau(patience=1, factor=0.1, min_lr=0.01)
    assert floor.update({"val_loss": 1.0}, 0.05) is None
    assert floor.update({"val_loss": 1.0}, 0.05) == pytest.approx(0.01)  # not below min_lr
    assert floor.update({"val_loss": 1.0}, 0.01) is None and floor.wait == 1  # at min_lr
    assert floor.update({"loss": 1.0}, 0.01) is None and floor.wait == 1  # no monitor
    assert ReduceLROnPlateau.from_params({}) == ReduceLROnPlateau(0, 0.1, 1e-4)
    assert not ReduceLROnPlateau.from_params({}).enabled
    assert ReduceLROnPlateau(patience=0).update({"val_loss": 1.0}, 0.1) is None


@pytest.mark.parametrize("stop_at", range(9))
def test_a_replayed_plateau_decides_like_an_uninterrupted_run(stop_at: int) -> None:
    values = [1.0, 0.9, 0.95, 0.92, 0.93, 0.7, 0.8, 0.75, 0.74, 0.76, 0.6, 0.61]
    straight: dict[str, list[float]] = {}
    final = run_plateau(ReduceLROnPlateau(patience=2, factor=0.5), values, 0.1, straight)
    assert straight["lr"] != [0.1] * len(values)  # it does cut
    # Stopped after epoch ``stop_at``; the checkpoint keeps the history and the rate.
    resumed: dict[str, list[float]] = {}
    lr = run_plateau(ReduceLROnPlateau(patience=2, factor=0.5), values[:stop_at], 0.1,
                     resumed)
    again = ReduceLROnPlateau(patience=2, factor=0.5)
    again.replay(resumed)
    assert run_plateau(again, values[stop_at:], lr, resumed) == final
    assert resumed == straight


def test_warmup_ramps_from_lr_over_ranks_to_the_scaled_lr() -> None:
    # 4 ranks, learning_rate 0.1 scaled to 0.4, 2 warm-up epochs (Horovod's formula).
    assert warmup_learning_rate(0.4, 4, 2, 0.0) == pytest.approx(0.1)  # start: 0.4 / 4
    assert warmup_learning_rate(0.4, 4, 2, 1.0) == pytest.approx(0.25)  # end of epoch 1
    assert warmup_learning_rate(0.4, 4, 2, 0.5) == pytest.approx(0.175)
    assert warmup_learning_rate(0.4, 4, 2, 2.0) == pytest.approx(0.4)  # reached
    assert warmup_learning_rate(0.4, 4, 2, 3.7) == 0.4  # after it: untouched
    assert warmup_learning_rate(0.4, 1, 2, 0.5) == 0.4  # one rank: no warm-up
    assert warmup_learning_rate(0.4, 4, 0, 0.5) == 0.4  # off
    rates = [warmup_learning_rate(0.4, 4, 2, e / 10) for e in range(21)]
    assert rates == sorted(rates) and len(set(rates)) == 21  # strictly rising, per batch


@pytest.mark.slow
@pytest.mark.integration
def test_keras_callbacks_log_lr_and_stop_a_user_model() -> None:
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    stopper = EarlyStopping(patience=2, min_delta=1e6)  # nothing counts as improvement
    params = {"reduce_lr_patience": 1, "reduce_lr_factor": 0.5, "reduce_lr_min_delta": 1e6}
    callbacks = keras_callbacks(params, tracker=stopper)
    history = model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=10, verbose=0,
                        callbacks=callbacks)
    assert len(history.history["val_loss"]) == 3  # epochs 2 and 3 without improvement
    # the rate each epoch trained with; cut by half at the end of epochs 2 and 3
    assert history.history["lr"] == pytest.approx([0.01, 0.01, 0.005])
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.0025)
    assert stopper.record(10) == {"best_epoch": 1, "stopped_early_at": 3}


def test_a_user_models_best_epoch_is_not_a_metric(tmp_path: Path) -> None:
    returned = {"val_loss": 0.5, "best_epoch": 3, "stopped_early_at": None}
    assert metrics_from(returned)[0] == {"val_loss": 0.5}
    assert extras_from(returned) == {"best_epoch": 3, "stopped_early_at": None}
    assert extras_from({"best_epoch": 4.0}) == {"best_epoch": 4}
    with pytest.raises(TypeError, match="'best_epoch' must be an epoch number"):
        extras_from({"best_epoch": "three"})
    write(tmp_path / "es_model.py", """
        from candle.api import EarlyStopping

        def f(params):
            stopper = EarlyStopping.from_params(params)
            losses = [1.0, 0.5, 0.6, 0.7, 0.4]
            for epoch, loss in enumerate(losses, start=1):
                if stopper.update(epoch, {"val_loss": loss}):
                    break
            return {"val_loss": stopper.best, **stopper.record(len(losses))}
    """)
    out = train_job("es_model:f", {"early_stopping_patience": 2},
                    TrainContext(job_dir=tmp_path, seed=1), tmp_path)
    assert out["metrics"] == {"val_loss": 0.5}
