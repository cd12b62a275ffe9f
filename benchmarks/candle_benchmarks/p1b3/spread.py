"""P1B3 heads that predict a spread as well as a value (``uq.loss``): heteroscedastic
(a mean and a log variance, Gaussian negative log-likelihood) or quantile (five quantiles,
pinball loss). Loss and point metrics are registered with Keras so checkpoints that name
them load again on resume; the point metrics keep the plain names (mse, mae, r2) so the
history and the sweep's metric stay the same as without a spread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle_benchmarks._uq import QUANTILE_LEVELS

LOG_VAR_CLIP = 10.0
HEADS = {"heteroscedastic": 2, "quantile": len(QUANTILE_LEVELS)}
POINT_COLUMN = {"heteroscedastic": 0, "quantile": QUANTILE_LEVELS.index(0.5)}
_REGISTERED: dict[str, Any] = {}


def _register(tf: Any, name: str, fn: Callable[..., Any], shown_as: str) -> Any:
    if name not in _REGISTERED:
        fn.__name__ = shown_as
        _REGISTERED[name] = tf.keras.utils.register_keras_serializable(
            package="candle_p1b3", name=name)(fn)
    return _REGISTERED[name]


def loss(tf: Any, kind: str) -> Any:
    if kind == "heteroscedastic":
        def gaussian_nll(y_true: Any, y_pred: Any) -> Any:
            y = tf.cast(tf.reshape(y_true, [-1]), y_pred.dtype)
            mean = y_pred[:, 0]
            log_var = tf.clip_by_value(y_pred[:, 1], -LOG_VAR_CLIP, LOG_VAR_CLIP)
            return tf.reduce_mean(0.5 * tf.exp(-log_var) * tf.square(y - mean) + 0.5 * log_var)

        return _register(tf, "gaussian_nll", gaussian_nll, "gaussian_nll")

    levels = tf.constant(QUANTILE_LEVELS, dtype=tf.float32)

    def pinball(y_true: Any, y_pred: Any) -> Any:
        error = tf.cast(tf.reshape(y_true, [-1, 1]), y_pred.dtype) - y_pred
        return tf.reduce_mean(tf.maximum(levels * error, (levels - 1.0) * error))

    return _register(tf, "pinball", pinball, "pinball")


def point_metrics(tf: Any, kind: str) -> list[Any]:
    """mse, mae and r2 of the point column (the mean, or the median quantile)."""
    column = POINT_COLUMN[kind]
    backend = tf.keras.backend

    def split(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        return tf.cast(tf.reshape(y_true, [-1]), y_pred.dtype), y_pred[:, column]

    def mse(y_true: Any, y_pred: Any) -> Any:
        y, p = split(y_true, y_pred)
        return backend.mean(backend.square(y - p))

    def mae(y_true: Any, y_pred: Any) -> Any:
        y, p = split(y_true, y_pred)
        return backend.mean(backend.abs(y - p))

    def r2(y_true: Any, y_pred: Any) -> Any:
        y, p = split(y_true, y_pred)
        ss_res = backend.sum(backend.square(y - p))
        ss_tot = backend.sum(backend.square(y - backend.mean(y)))
        return 1.0 - ss_res / (ss_tot + backend.epsilon())

    return [_register(tf, f"{name}_{kind}", fn, name)
            for name, fn in (("mse", mse), ("mae", mae), ("r2", r2))]


def split_output(kind: str) -> Callable[[NDArray[np.float32]], dict[str, Any]]:
    """Raw model outputs → what predictions.npz keeps (mean + sigma, or quantiles)."""
    def heteroscedastic(raw: NDArray[np.float32]) -> dict[str, Any]:
        log_var = np.clip(raw[:, 1], -LOG_VAR_CLIP, LOG_VAR_CLIP)
        return {"mean": raw[:, 0], "sigma": np.exp(0.5 * log_var).astype(np.float32)}

    def quantile(raw: NDArray[np.float32]) -> dict[str, Any]:
        return {"mean": raw[:, POINT_COLUMN["quantile"]], "quantiles": raw,
                "quantile_levels": np.asarray(QUANTILE_LEVELS, dtype=np.float32)}

    return heteroscedastic if kind == "heteroscedastic" else quantile
