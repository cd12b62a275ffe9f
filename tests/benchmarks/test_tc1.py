"""TC1: upstream model size, learning on synthetic tumour types, ReduceLROnPlateau."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle.api import TrainContext
from candle_benchmarks.io import DataFileError
from candle_benchmarks.synth_files import write_synthetic
from candle_benchmarks.tc1 import BENCHMARK
from candle_benchmarks.tc1 import data as tc1_data


def _small(**extra: Any) -> dict[str, Any]:
    params = BENCHMARK.defaults()
    params.update(features=200, samples=240, classes=4, conv=[16, 5, 1, 16, 5, 1],
                  dense=[32, 16], signal_genes=0.1, signal_strength=1.0, batch_size=20)
    params.update(extra)
    return params


def test_defaults_follow_upstream() -> None:
    d = BENCHMARK.defaults()
    assert (d["conv"], d["pool"], d["dense"]) == ([128, 20, 1, 128, 10, 1], [1, 10], [200, 20])
    assert (d["classes"], d["optimizer"], d["learning_rate"]) == (36, "sgd", 0.01)
    assert (d["batch_size"], d["epochs"], d["dropout"]) == (20, 400, 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("classes", [36, 18])
def test_upstream_parameter_count(classes: int) -> None:
    from candle_benchmarks.tc1.train import build

    width = 60483
    conv1 = 20 * 1 * 128 + 128                 # kernel 20, 1 channel in, 128 filters
    len1 = (width - 20 + 1) // 1               # valid conv, then pool 1
    conv2 = 10 * 128 * 128 + 128
    len2 = (len1 - 10 + 1) // 10               # valid conv, then pool 10 -> 6045
    dense1 = len2 * 128 * 200 + 200
    dense2 = 200 * 20 + 20
    out = 20 * classes + classes
    expected = conv1 + conv2 + dense1 + dense2 + out
    params = BENCHMARK.defaults() | {"classes": classes}
    assert build(params).count_params() == expected  # 154,923,632 for 36 classes


def test_synthetic_classes_are_balanced_and_seeded() -> None:
    params = _small(samples=41, features=30, classes=4)
    x, y = tc1_data.synthesize(params)
    assert x.shape == (41, 30) and x.dtype == np.float32 and np.all(x > 0)
    assert sorted(np.bincount(y).tolist()) == [10, 10, 10, 11]
    x2, y2 = tc1_data.synthesize(params)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = tc1_data.synthesize(params | {"rng_seed": 5})
    assert not np.array_equal(x, x3)


def test_cv_fold_is_stratified_subset_of_train() -> None:
    params = _small(samples=120, features=20)
    full = tc1_data.load(params, None, None, 0, True)
    fold = tc1_data.load(params, 1, 4, 3, True)
    n_train = len(full.y_train)
    assert len(fold.y_train) + len(fold.y_val) == n_train
    assert abs(len(fold.y_val) - n_train / 4) <= 4  # balanced across labels and folds
    assert fold.x_val.shape[1:] == (20, 1) and fold.y_val.shape[1] == 4


def test_label_outside_classes_names_the_file(tmp_path: Path) -> None:
    write_synthetic("tc1", tmp_path, _small(samples=30, features=8, classes=6))
    params = _small(data=str(tmp_path), classes=3)
    with pytest.raises(DataFileError, match=r"type_18_300_train\.csv: label [345] outside"):
        tc1_data.load(params, None, None, 0, True)


@pytest.mark.slow
@pytest.mark.integration
def test_learns_tumour_types(tmp_path: Path) -> None:
    from candle_benchmarks.tc1.train import train

    params = _small(epochs=12, optimizer="adam", learning_rate=0.003)
    before = dict(params)
    result = train(params, TrainContext(job_dir=tmp_path, seed=1))
    assert params == before  # the callback list went into a copy
    history = result["history"]
    assert len(history["val_accuracy"]) == 12
    assert history["val_accuracy"][-1] > 0.6  # 4 balanced classes: chance is 0.25
    assert history["val_loss"][-1] < history["val_loss"][0]
    declared = set(BENCHMARK.metrics)  # lr: only with ReduceLROnPlateau on
    assert declared - {"lr"} <= set(result["metrics"]) <= declared


@pytest.mark.slow
@pytest.mark.integration
def test_reduce_lr_on_plateau_cuts_learning_rate(tmp_path: Path) -> None:
    import tensorflow as tf

    from candle_benchmarks.tc1.train import train

    rates: list[float] = []

    class Probe(tf.keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            rates.append(float(tf.keras.backend.get_value(self.model.optimizer.learning_rate)))

    # A learning rate too small to move val_loss: a plateau from the first epoch.
    params = _small(epochs=3, samples=60, features=30, learning_rate=1e-9,
                    reduce_lr_patience=1, conv=[4, 3, 1], pool=[1], dense=[8],
                    _extra_callbacks=[Probe()])
    train(params, TrainContext(job_dir=tmp_path, seed=1))
    # patience 1, cooldown 0: cut by 10x after every epoch without improvement.
    assert rates == pytest.approx([1e-9, 1e-10, 1e-11], rel=1e-3)
