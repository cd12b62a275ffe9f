"""Call a user's ``package.module:function`` model the way the sweep contract says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from candle.benchmark import load_attribute
from candle.uq.predictions import Predictions


def load_function(spec: str, base_dir: Path) -> Callable[..., Any]:
    """Import ``module:function`` with the sweep file's folder first on sys.path."""
    fn = load_attribute(spec, base_dir)
    if not callable(fn):
        module_name, _, func_name = spec.partition(":")
        raise AttributeError(f"{module_name} has no function {func_name!r}")
    return fn  # type: ignore[no-any-return]


# What a user model may return besides metrics, kept in the job's result as they are
# (candle.api.EarlyStopping.record() gives both).
RESULT_KEYS = ("best_epoch", "stopped_early_at")


def metrics_from(returned: Any) -> tuple[dict[str, float], dict[str, list[float]]]:
    """A dict of metrics, or a Keras History whose last epoch counts. The dict may also
    hold ``history`` (per-epoch lists, for learning curves), ``predictions`` (see
    `predictions_from`) and RESULT_KEYS (see `extras_from`)."""
    history = getattr(returned, "history", None)
    if isinstance(history, dict):
        series = {str(k): [float(x) for x in v] for k, v in history.items()}
        return {k: v[-1] for k, v in series.items() if v}, series
    if isinstance(returned, dict):
        extra = returned.get("history") or {}
        if not isinstance(extra, dict):
            raise TypeError("a user model's 'history' must map metric names to lists")
        series = {str(k): [float(x) for x in v] for k, v in extra.items()}
        return {str(k): float(v) for k, v in returned.items()
                if k not in ("history", "predictions", *RESULT_KEYS)}, series
    raise TypeError(f"a user model must return a dict of metrics or a Keras History, "
                    f"got {type(returned).__name__}")


def extras_from(returned: Any) -> dict[str, int | None]:
    """``best_epoch`` and ``stopped_early_at`` a user model returned (an epoch or None)."""
    if not isinstance(returned, dict):
        return {}
    out: dict[str, int | None] = {}
    for key in RESULT_KEYS:
        if key in returned:
            value = returned[key]
            whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            if value is not None and (isinstance(value, bool) or not whole):
                raise TypeError(f"a user model's {key!r} must be an epoch number or None, "
                                f"got {value!r}")
            out[key] = None if value is None else int(value)
    return out


def predictions_from(returned: Any) -> Predictions | None:
    """A user model's test-set predictions, for UQ summaries: ``{"predictions": {"kind":
    "regression" | "classification", "y_true": ..., "mean": ..., optional "sigma",
    "quantiles" + "quantile_levels", "samples"}}``."""
    if not isinstance(returned, dict) or "predictions" not in returned:
        return None
    raw = returned["predictions"]
    if not isinstance(raw, dict):
        raise TypeError("a user model's 'predictions' must be a mapping")
    import numpy as np

    unknown = set(raw) - {"kind", "y_true", "mean", "sigma", "quantiles", "quantile_levels",
                          "samples"}
    if unknown:
        raise TypeError(f"unknown prediction keys: {', '.join(sorted(unknown))}")
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in raw.items() if k != "kind"}
    return Predictions(kind=str(raw.get("kind", "regression")), **arrays)
