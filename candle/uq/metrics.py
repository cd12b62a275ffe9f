"""UQ numbers from combined predictions (pure NumPy, no TensorFlow).

Definitions (docs/uq.md says the same):
- members: the replicas of one point and fold; MC dropout: every forward pass of every
  replica. The ensemble prediction is the members' mean.
- spread: per sample, the population std across members of the point prediction
  (classification: of the probability of the ensemble's predicted class); `spread` is its
  mean over the test set.
- regression predictive std: sqrt(member variance + mean predicted variance) (the
  heteroscedastic mixture; without a predicted sigma it is the member std).
- coverage_68 / coverage_95: share of targets inside the central 68.27% / 95% Gaussian
  interval mean ± z·std (z = 1, 1.96), or, with a quantile loss, inside the predicted
  [q0.16, q0.84] / [q0.025, q0.975].
- calibration_error (regression): mean |observed - expected| over expected levels
  τ = 0.05, 0.10, …, 0.95, observed = share of targets ≤ the predicted τ-quantile (the
  quantile loss: its own levels).
- classification: ensemble accuracy, mean entropy (nats) of the mean probabilities, and
  the expected calibration error over 10 equal-width confidence bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.uq.predictions import Predictions

Z68 = 1.0
Z95 = 1.959963984540054
LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))
ECE_BINS = 10
INTERVALS = {"coverage_68": (0.15865525393145707, 0.8413447460685429),
             "coverage_95": (0.025, 0.975)}

FloatArray = NDArray[np.float64]


@dataclass
class Combined:
    """One test set's ensemble: targets, mean prediction and its uncertainty per sample."""

    kind: str
    y: NDArray[Any]
    mean: FloatArray  # (n,) regression; (n, k) class probabilities
    spread: FloatArray  # (n,) std across members
    sigma: FloatArray  # (n,) regression predictive std; classification: same as spread
    members: int
    quantiles: FloatArray | None = None  # (n, q)
    levels: FloatArray | None = None  # (q,)


def _member_stack(members: list[Predictions]) -> FloatArray:
    """(M, n[, k]): MC-dropout passes where saved, else each member's mean prediction."""
    parts = [m.samples if m.samples is not None else m.mean[None] for m in members]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


def combine(members: list[Predictions]) -> Combined:
    """The ensemble of predictions made on one test set (same targets, same order)."""
    if not members:
        raise ValueError("no predictions to combine")
    first = members[0]
    for other in members[1:]:
        if other.kind != first.kind or other.y_true.shape != first.y_true.shape or \
                not np.array_equal(other.y_true, first.y_true):
            raise ValueError("members were evaluated on different test sets")
    stack = _member_stack(members)
    mean = stack.mean(axis=0)
    if first.kind == "classification":
        top = mean.argmax(axis=1)
        top_probs = np.take_along_axis(stack, top[None, :, None], axis=2)[..., 0]
        spread = top_probs.std(axis=0)
        return Combined(first.kind, first.y_true, mean, spread, spread, len(stack))
    spread = stack.std(axis=0)
    variance = spread ** 2
    sigmas = [m.sigma for m in members if m.sigma is not None]
    if sigmas:
        variance = variance + np.mean(np.square(np.asarray(sigmas, dtype=np.float64)), axis=0)
    quantiles = levels = None
    if all(m.quantiles is not None for m in members) and first.quantile_levels is not None:
        quantiles = np.mean([np.asarray(m.quantiles, dtype=np.float64) for m in members],
                            axis=0)
        levels = np.asarray(first.quantile_levels, dtype=np.float64)
    return Combined(first.kind, np.asarray(first.y_true, dtype=np.float64), mean, spread,
                    np.sqrt(variance), len(stack), quantiles, levels)


def concat(parts: list[Combined]) -> Combined:
    """Disjoint test sets (CV folds' held-out samples) pooled into one."""
    if len(parts) == 1:
        return parts[0]
    quantiles = levels = None
    if all(p.quantiles is not None for p in parts):
        quantiles = np.concatenate([p.quantiles for p in parts if p.quantiles is not None])
        levels = parts[0].levels
    return Combined(parts[0].kind, np.concatenate([p.y for p in parts]),
                    np.concatenate([p.mean for p in parts]),
                    np.concatenate([p.spread for p in parts]),
                    np.concatenate([p.sigma for p in parts]),
                    min(p.members for p in parts), quantiles, levels)


def _quantile_at(c: Combined, level: float) -> FloatArray:
    assert c.quantiles is not None and c.levels is not None
    index = int(np.argmin(np.abs(c.levels - level)))
    if abs(float(c.levels[index]) - level) > 1e-3:
        raise ValueError(f"no {level:g} quantile among {c.levels.tolist()}")
    return c.quantiles[:, index]


def regression_metrics(c: Combined) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """Metrics and the calibration curve (expected, observed) of a regression ensemble."""
    y, mean = c.y, c.mean
    error = y - mean
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    metrics = {
        "ensemble_mse": float(np.mean(error ** 2)),
        "ensemble_mae": float(np.mean(np.abs(error))),
        "ensemble_r2": 1.0 - float(np.sum(error ** 2)) / ss_tot if ss_tot > 0 else float("nan"),
        "spread": float(np.mean(c.spread)),
        "predictive_std": float(np.mean(c.sigma)),
    }
    if c.quantiles is not None:
        for name, (low, high) in INTERVALS.items():
            inside = (y >= _quantile_at(c, low)) & (y <= _quantile_at(c, high))
            metrics[name] = float(np.mean(inside))
        assert c.levels is not None
        curve = [(float(t), float(np.mean(y <= c.quantiles[:, i])))
                 for i, t in enumerate(c.levels)]
    else:
        for name, z in (("coverage_68", Z68), ("coverage_95", Z95)):
            metrics[name] = float(np.mean(np.abs(error) <= z * c.sigma))
        normal = NormalDist()
        curve = [(t, float(np.mean(y <= mean + normal.inv_cdf(t) * c.sigma))) for t in LEVELS]
    metrics["calibration_error"] = float(np.mean([abs(o - e) for e, o in curve]))
    return metrics, curve


def classification_metrics(c: Combined) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """Metrics and the reliability curve (mean confidence, accuracy) per non-empty bin."""
    probs, y = c.mean, np.asarray(c.y, dtype=np.int64)
    predicted = probs.argmax(axis=1)
    correct = (predicted == y).astype(np.float64)
    confidence = probs.max(axis=1)
    entropy = -np.sum(probs * np.log(np.clip(probs, 1e-12, None)), axis=1)
    bins = np.clip(np.ceil(confidence * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)
    ece, curve = 0.0, []
    for b in range(ECE_BINS):
        chosen = bins == b
        if chosen.any():
            conf, acc = float(confidence[chosen].mean()), float(correct[chosen].mean())
            ece += chosen.mean() * abs(acc - conf)
            curve.append((conf, acc))
    metrics = {
        "ensemble_accuracy": float(correct.mean()),
        "mean_entropy": float(entropy.mean()),
        "ece": float(ece),
        "spread": float(np.mean(c.spread)),
    }
    return metrics, curve


def uq_metrics(c: Combined) -> tuple[dict[str, float], list[tuple[float, float]]]:
    return classification_metrics(c) if c.kind == "classification" else regression_metrics(c)
