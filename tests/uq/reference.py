"""The UQ numbers written out from their definitions (docs/uq.md) with plain loops, so
the tests check candle.uq against an implementation that shares none of its code."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def phi_inv(p: float) -> float:
    """Inverse standard normal CDF by bisection on erf."""
    low, high = -10.0, 10.0
    for _ in range(200):
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def regression(y: Sequence[float], members: Sequence[Sequence[float]],
               sigmas: Sequence[Sequence[float]] | None = None) -> dict[str, float]:
    """Gaussian ensemble: member mean, member std (+ mean predicted variance)."""
    n, m = len(y), len(members)
    means, stds, total = [], [], []
    for i in range(n):
        values = [float(members[j][i]) for j in range(m)]
        mu = sum(values) / m
        var = sum((v - mu) ** 2 for v in values) / m
        extra = sum(float(sigmas[j][i]) ** 2 for j in range(m)) / m if sigmas else 0.0
        means.append(mu)
        stds.append(math.sqrt(var))
        total.append(math.sqrt(var + extra))
    out = _point_errors(y, means)
    out["spread"] = sum(stds) / n
    out["coverage_68"] = sum(abs(y[i] - means[i]) <= total[i] for i in range(n)) / n
    out["coverage_95"] = sum(abs(y[i] - means[i]) <= Z95 * total[i] for i in range(n)) / n
    gaps = []
    for k in range(1, 20):
        tau = k / 20
        observed = sum(y[i] <= means[i] + phi_inv(tau) * total[i] for i in range(n)) / n
        gaps.append(abs(observed - tau))
    out["calibration_error"] = sum(gaps) / len(gaps)
    return out


def quantile_regression(y: Sequence[float], members: Sequence[Sequence[Sequence[float]]],
                        levels: Sequence[float], median: int) -> dict[str, float]:
    """Members' quantiles (n x q each) averaged; intervals and calibration from them."""
    n, m, q = len(y), len(members), len(levels)
    avg = [[sum(float(members[j][i][c]) for j in range(m)) / m for c in range(q)]
           for i in range(n)]
    medians = [[float(members[j][i][median]) for j in range(m)] for i in range(n)]
    means = [sum(v) / m for v in medians]
    out = _point_errors(y, means)
    out["spread"] = sum(math.sqrt(sum((v - mu) ** 2 for v in vs) / m)
                        for vs, mu in zip(medians, means, strict=True)) / n
    out["coverage_68"] = sum(avg[i][1] <= y[i] <= avg[i][3] for i in range(n)) / n
    out["coverage_95"] = sum(avg[i][0] <= y[i] <= avg[i][4] for i in range(n)) / n
    out["calibration_error"] = sum(
        abs(sum(y[i] <= avg[i][c] for i in range(n)) / n - levels[c]) for c in range(q)) / q
    return out


def _point_errors(y: Sequence[float], means: Sequence[float]) -> dict[str, float]:
    n = len(y)
    ybar = sum(y) / n
    sse = sum((y[i] - means[i]) ** 2 for i in range(n))
    return {"ensemble_mse": sse / n,
            "ensemble_mae": sum(abs(y[i] - means[i]) for i in range(n)) / n,
            "ensemble_r2": 1 - sse / sum((v - ybar) ** 2 for v in y)}


def classification(labels: Sequence[int], members: Sequence[Sequence[Sequence[float]]]
                   ) -> dict[str, float]:
    """members: M x n x k probabilities (replicas, or MC passes)."""
    m, n, k = len(members), len(labels), len(members[0][0])
    correct, entropy, conf, spread = [], [], [], []
    for i in range(n):
        p = [sum(float(members[j][i][c]) for j in range(m)) / m for c in range(k)]
        top = max(range(k), key=lambda c: p[c])
        correct.append(top == labels[i])
        conf.append(p[top])
        entropy.append(-sum(v * math.log(max(v, 1e-12)) for v in p))
        tops = [float(members[j][i][top]) for j in range(m)]
        mu = sum(tops) / m
        spread.append(math.sqrt(sum((t - mu) ** 2 for t in tops) / m))
    ece = 0.0
    for b in range(10):
        chosen = [i for i in range(n)
                  if (b == 0 and conf[i] <= 0.1) or b / 10 < conf[i] <= (b + 1) / 10]
        if chosen:
            acc = sum(correct[i] for i in chosen) / len(chosen)
            avg = sum(conf[i] for i in chosen) / len(chosen)
            ece += len(chosen) / n * abs(acc - avg)
    return {"ensemble_accuracy": sum(correct) / n, "mean_entropy": sum(entropy) / n,
            "ece": ece, "spread": sum(spread) / n}
