"""Train P1B3 for one job (imported only when a job runs: it pulls in TensorFlow)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import TrainContext
from candle_benchmarks._horovod import current, data_digest
from candle_benchmarks._keras import (
    Arrays,
    configure_tensorflow,
    fit,
    make_optimizer,
)
from candle_benchmarks._uq import (
    NOISE_SEED,
    UQConfig,
    bootstrap_indices,
    noise_level,
    noisy_targets,
    training_set_record,
)
from candle_benchmarks.p1b3 import data, spread

_R2: dict[str, Callable[..., Any]] = {}


def r2_metric(tf: Any) -> Callable[..., Any]:
    """Coefficient of determination per batch (candle_keras r2), registered once with
    Keras so checkpoints that name it load again on resume."""
    if "r2" not in _R2:
        backend = tf.keras.backend

        def r2(y_true: Any, y_pred: Any) -> Any:
            y_true = tf.cast(tf.reshape(y_true, [-1]), y_pred.dtype)
            y_pred = tf.reshape(y_pred, [-1])
            ss_res = backend.sum(backend.square(y_true - y_pred))
            ss_tot = backend.sum(backend.square(y_true - backend.mean(y_true)))
            return 1.0 - ss_res / (ss_tot + backend.epsilon())

        _R2["r2"] = tf.keras.utils.register_keras_serializable(package="candle_p1b3")(r2)
    return _R2["r2"]


def input_width(params: dict[str, Any]) -> int:
    """1 (log concentration) + cell features + drug descriptors (synthetic sizes)."""
    return 1 + int(params["cell_features"]) + int(params["drug_features"])


def build_model(tf: Any, params: dict[str, Any], width: int) -> Any:
    """Upstream p1b3_baseline_keras2: optional Conv1D triples (each + pool), then dense
    layers (Dense [-> BatchNorm] -> activation -> dropout), then Dense(1), mse + sgd."""
    layers = tf.keras.layers
    conv = list(params["conv"])
    if len(conv) % 3:
        raise ValueError(f"conv must be (filters, kernel, stride) triples, got {conv}")

    def init() -> Any:
        # A fresh initializer per layer: upstream's 'normal' is Keras 2 RandomNormal(0, 0.05).
        name = str(params["initialization"])
        if name == "normal":
            return tf.keras.initializers.RandomNormal(mean=0.0, stddev=0.05)
        return tf.keras.initializers.get(name)

    model = tf.keras.Sequential()
    model.add(layers.InputLayer(input_shape=(width, 1) if conv else (width,)))
    for i in range(0, len(conv), 3):
        filters, kernel, stride = conv[i : i + 3]
        if filters <= 0 or kernel <= 0 or stride <= 0:
            break  # upstream stops at the first non-positive triple
        model.add(layers.Conv1D(filters, kernel, strides=stride, kernel_initializer=init(),
                                bias_initializer="zeros"))
        if params["batch_norm"]:
            model.add(layers.BatchNormalization())
        model.add(layers.Activation(params["activation"]))
        if int(params["pool"]):
            model.add(layers.MaxPooling1D(pool_size=int(params["pool"])))
    if conv:
        model.add(layers.Flatten())
    for units in params["dense"]:
        if units:
            model.add(layers.Dense(units, kernel_initializer=init(), bias_initializer="zeros"))
            if params["batch_norm"]:
                model.add(layers.BatchNormalization())
            model.add(layers.Activation(params["activation"]))
            if params["dropout"]:
                model.add(layers.Dropout(params["dropout"]))
    head = params.get("_uq_loss")  # uq.loss: predict a spread as well
    if head:
        model.add(layers.Dense(spread.HEADS[head]))
        model.compile(loss=spread.loss(tf, head), optimizer=make_optimizer(tf, params),
                      metrics=spread.point_metrics(tf, head))
        return model
    model.add(layers.Dense(1))
    model.compile(loss=params["loss"], optimizer=make_optimizer(tf, params),
                  metrics=["mse", "mae", r2_metric(tf)])
    return model


def build(params: dict[str, Any], width: int | None = None) -> Any:
    tf = configure_tensorflow(TrainContext(job_dir=".", seed=int(params["rng_seed"])))
    return build_model(tf, params, width or input_width(params))


def batches(tf: Any, dose: data.DoseData, idx: NDArray[np.int64], batch_size: int,
            channel: bool, shuffle_seed: int | None, y: NDArray[np.float32] | None = None,
            feature_noise: float = 0.0) -> Any:
    """A keras Sequence gathering rows per batch (the joined matrix may not fit in memory);
    training batches are reshuffled every epoch from ``shuffle_seed``. ``y``: targets in
    place of dose.y (UQ label noise); ``feature_noise``: Gaussian noise of that std on the
    gathered features, drawn per batch and epoch from ``shuffle_seed`` (UQ feature noise)."""
    targets = dose.y if y is None else y

    class DoseBatches(tf.keras.utils.Sequence):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.order = idx.copy()
            self.rng = np.random.default_rng(shuffle_seed)
            self.epoch = 0
            if shuffle_seed is not None:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return math.ceil(len(self.order) / batch_size)

        def __getitem__(self, i: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
            chosen = self.order[i * batch_size : (i + 1) * batch_size]
            x = dose.rows(chosen)
            if feature_noise > 0:
                noise = np.random.default_rng([NOISE_SEED, shuffle_seed or 0, self.epoch, i])
                x += noise.normal(0.0, feature_noise, x.shape).astype(np.float32)
            return (x[..., None] if channel else x), targets[chosen][:, None]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            if shuffle_seed is not None:
                self.rng.shuffle(self.order)

    return DoseBatches()


def train(params: dict[str, Any], ctx: TrainContext) -> dict[str, Any]:
    tf = configure_tensorflow(ctx)
    dose = data.load(params, ctx.fold, ctx.folds, ctx.cv_seed, ctx.design)
    uq = UQConfig.of(ctx.uq)
    head = uq.loss if uq is not None else None
    model = build_model(tf, {**params, "_uq_loss": head}, dose.width)
    size = int(params["batch_size"])
    channel = bool(params["conv"])
    no_y: Any = None  # the Sequences yield (x, y) themselves
    dist = current()  # under Horovod each rank gathers batches from its own rows only
    # The replica's training rows: a bootstrap resample, noisy targets or noisy features.
    rows, targets, feature_noise = dose.train_idx, dose.y, 0.0
    if uq is not None and uq.method == "bootstrap":
        rows = rows[bootstrap_indices(len(rows), ctx.seed)]
    if uq is not None and uq.method == "noise":
        if uq.noise == "labels":
            targets = dose.y.copy()
            targets[dose.train_idx] = noisy_targets(dose.y[dose.train_idx], noise_level(params),
                                                    ctx.seed)
        else:
            feature_noise = noise_level(params)
    # The job's training data before UQ and sharding: its rows and the feature tables.
    train = dose.train_idx
    digest = data_digest(dose.cell_idx[train], dose.drug_idx[train], dose.log_conc[train],
                         dose.y[train], dose.cell_x, dose.drug_x) if dist.rank == 0 else None
    train_idx = dist.shard(rows, equal=True)
    val_idx = dist.shard(dose.val_idx, equal=False)
    arrays = Arrays(batches(tf, dose, train_idx, size, channel, ctx.seed, targets,
                            feature_noise), no_y,
                    batches(tf, dose, val_idx, size, channel, None), no_y,
                    train_samples=len(train_idx) * dist.size, kind="regression",
                    predict_x=batches(tf, dose, dose.val_idx, size, channel, None),
                    predict_y=dose.y[dose.val_idx],
                    split_output=spread.split_output(head) if head else None,
                    fold_assignment=dose.fold_assignment, fold_groups=dose.fold_groups,
                    test_sets=evaluation_sets(tf, dose, size, channel),
                    training_set=training_set_record(uq, rows, params) if uq else None,
                    data_digest=digest)
    return fit(tf, model, arrays, params, ctx)


def evaluation_sets(tf: Any, dose: data.DoseData, batch_size: int,
              channel: bool) -> dict[str, tuple[Any, Any]]:
    """What rank 0 evaluates after training (a design's): the held-out groups' rows as
    ``test`` (metrics test_loss, test_mse, ...) and each test study's as ``test_<STUDY>``."""
    sets: dict[str, tuple[Any, Any]] = {}
    if len(dose.holdout_idx):
        sets["test"] = (batches(tf, dose, dose.holdout_idx, batch_size, channel, None), None)
    for study, rows in dose.test_idx.items():
        sets[f"test_{study}"] = (batches(tf, dose, rows, batch_size, channel, None), None)
    return sets
