"""What a UQ sweep changes in a training job: the replica's training set (a bootstrap
resample, feature noise or label noise), the loss (a predicted mean and spread for
regression), and the test-set predictions it saves (MC dropout: many passes with dropout
on). Rank 0 alone predicts; the runner writes the file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import NOISE_PARAM, Predictions

BOOTSTRAP_SEED = 0x5EED  # mixed with the job seed: replicas resample differently
NOISE_SEED = 0x0153
QUANTILE_LEVELS = (0.025, 0.15865525393145707, 0.5, 0.8413447460685429, 0.975)
PREDICT_BATCH = 1024


@dataclass(frozen=True)
class UQConfig:
    method: str
    samples: int
    noise: str
    loss: str | None

    @classmethod
    def of(cls, record: dict[str, Any] | None) -> UQConfig | None:
        if not record:
            return None
        return cls(str(record.get("method", "ensemble")), int(record.get("samples") or 0),
                   str(record.get("noise") or "features"), record.get("loss"))


def bootstrap_indices(n: int, seed: int) -> NDArray[np.int64]:
    """n draws with replacement from range(n): one replica's bootstrap training set."""
    return np.random.default_rng([BOOTSTRAP_SEED, seed]).integers(0, n, n)


def noise_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([NOISE_SEED, seed])


def add_feature_noise(x: NDArray[np.float32], level: float, seed: int) -> NDArray[np.float32]:
    """Gaussian noise of std ``level`` on the (scaled) training features."""
    if level <= 0:
        return x
    noisy: NDArray[np.float32] = (x + noise_rng(seed).normal(0.0, level, x.shape)).astype(
        np.float32)
    return noisy


def flip_labels(onehot: NDArray[np.float32], level: float, seed: int) -> NDArray[np.float32]:
    """Each training label moves, with probability ``level``, to another class drawn
    uniformly (CANDLE uq-noise's label noise for classifiers)."""
    if level <= 0:
        return onehot
    rng = noise_rng(seed)
    labels = onehot.argmax(axis=1)
    classes = onehot.shape[1]
    flip = rng.random(len(labels)) < level
    shift = rng.integers(1, classes, len(labels))
    labels = np.where(flip, (labels + shift) % classes, labels)
    flipped: NDArray[np.float32] = np.eye(classes, dtype=np.float32)[labels]
    return flipped


def noisy_targets(y: NDArray[np.float32], level: float, seed: int) -> NDArray[np.float32]:
    """Regression label noise: Gaussian of std ``level`` × the targets' std."""
    if level <= 0:
        return y
    scale = float(np.std(y)) or 1.0
    return (y + noise_rng(seed).normal(0.0, level * scale, y.shape)).astype(np.float32)


def noise_level(params: dict[str, Any]) -> float:
    return float(params.get(NOISE_PARAM, 0.0) or 0.0)


def training_set_record(uq: UQConfig, rows: NDArray[np.int64] | int,
                        params: dict[str, Any]) -> dict[str, Any]:
    """What the job's result says about its training set (provenance for UQ)."""
    record: dict[str, Any] = {"method": uq.method}
    if uq.method == "bootstrap" and not isinstance(rows, int):
        record.update(rows=len(rows), distinct_rows=len(np.unique(rows)))
    if uq.method == "noise":
        record.update(noise=uq.noise, level=noise_level(params))
    return record


def transform_training_set(x: NDArray[np.float32], y: NDArray[np.float32],
                           uq: UQConfig | None, params: dict[str, Any], seed: int
                           ) -> tuple[NDArray[np.float32], NDArray[np.float32], dict[str, Any]]:
    """The replica's training arrays (NumPy benchmarks: NT3, TC1; y one-hot) and what was
    done to them."""
    if uq is None:
        return x, y, {}
    chosen: NDArray[np.int64] | int = len(y)
    if uq.method == "bootstrap":
        chosen = bootstrap_indices(len(y), seed)
        x, y = x[chosen], y[chosen]
    if uq.method == "noise":
        level = noise_level(params)
        if uq.noise == "features":
            x = add_feature_noise(x, level, seed)
        else:
            y = flip_labels(y, level, seed)
    return x, y, training_set_record(uq, chosen, params)


def _batches(x: Any) -> list[Any]:
    """Slices of a NumPy array, or the batches of a Keras Sequence (inputs only)."""
    if isinstance(x, np.ndarray):
        return [x[i : i + PREDICT_BATCH] for i in range(0, len(x), PREDICT_BATCH)]
    return [x[i][0] for i in range(len(x))]


def _forward(model: Any, x: Any, training: bool) -> NDArray[np.float32]:
    outputs = [np.asarray(model(batch, training=training)) for batch in _batches(x)]
    stacked: NDArray[np.float32] = np.concatenate(outputs).astype(np.float32)
    return stacked


def predict(model: Any, x: Any, y_true: NDArray[Any], kind: str, uq: UQConfig,
            split_output: Callable[[NDArray[np.float32]], dict[str, Any]] | None = None
            ) -> Predictions:
    """The saved test-set predictions. ``split_output`` turns a multi-output regression
    (heteroscedastic, quantile) into its mean/sigma/quantiles; MC dropout runs
    ``uq.samples`` passes with dropout on (Keras ``training=True``)."""
    def shape(raw: NDArray[np.float32]) -> dict[str, Any]:
        if split_output is not None:
            return split_output(raw)
        return {"mean": raw[:, 0] if kind == "regression" else raw}

    if uq.method == "mc_dropout":
        passes = [shape(_forward(model, x, training=True)) for _ in range(uq.samples)]
        samples = np.stack([p["mean"] for p in passes])
        extra: dict[str, Any] = {}
        if "sigma" in passes[0]:
            extra["sigma"] = np.sqrt(np.mean(np.square([p["sigma"] for p in passes]), axis=0))
        return Predictions(kind, y_true, samples.mean(axis=0), samples=samples, **extra)
    return Predictions(kind, y_true, **shape(_forward(model, x, training=False)))
