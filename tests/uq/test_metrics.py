"""UQ numbers on hand-made predictions, checked against the definitions computed here
independently (plain loops, written from docs/uq.md rather than from candle.uq.metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from candle.uq import predictions
from candle.uq.metrics import combine, concat, uq_metrics
from candle.uq.predictions import Predictions
from tests.uq import reference


def test_regression_ensemble_with_predicted_sigma() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=200)
    members = [y + rng.normal(0, 0.5, 200) for _ in range(4)]
    sigmas = [np.full(200, 0.3) + rng.random(200) * 0.2 for _ in range(4)]
    preds = [Predictions("regression", y, m.astype(np.float32), sigma=s.astype(np.float32))
             for m, s in zip(members, sigmas, strict=True)]
    metrics, curve = uq_metrics(combine(preds))
    f32 = [[float(np.float32(v)) for v in m] for m in members]
    s32 = [[float(np.float32(v)) for v in s] for s in sigmas]
    expected = reference.regression(list(map(float, y)), f32, s32)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    assert len(curve) == 19 and 0.0 < metrics["coverage_68"] < metrics["coverage_95"] <= 1.0


def test_regression_members_only_and_quantiles() -> None:
    y = np.array([0.0, 1.0, 2.0, 3.0])
    a = Predictions("regression", y, np.array([0.5, 1.0, 1.0, 3.5], dtype=np.float32))
    b = Predictions("regression", y, np.array([-0.5, 1.0, 3.0, 2.5], dtype=np.float32))
    metrics, _ = uq_metrics(combine([a, b]))
    # means 0,1,2,3 (exact), member stds 0.5,0,1,0.5 → every target at its mean: covered
    assert metrics["ensemble_mse"] == 0.0 and metrics["spread"] == pytest.approx(0.5)
    assert metrics["coverage_68"] == 1.0
    levels = np.array([0.025, 0.15865525393145707, 0.5, 0.8413447460685429, 0.975])
    q = np.array([[-2, -1, 0, 1, 2]] * 4, dtype=np.float32) + y[:, None] * 0
    target = np.array([0.5, -1.5, 3.0, 0.0])  # inside 68, inside 95 only, outside, inside
    quant = Predictions("regression", target, q[:, 2], quantiles=q, quantile_levels=levels)
    metrics, curve = uq_metrics(combine([quant]))
    assert metrics["coverage_68"] == 0.5 and metrics["coverage_95"] == 0.75
    # observed share below each quantile: -2:0, -1:1/4, 0:2/4, 1:3/4, 2:3/4
    assert [o for _, o in curve] == [0.0, 0.25, 0.5, 0.75, 0.75]
    gaps = [0.025, abs(0.25 - levels[1]), 0.0, abs(0.75 - levels[3]), 0.975 - 0.75]
    assert metrics["calibration_error"] == pytest.approx(sum(gaps) / 5)


def test_classification_mc_samples_accuracy_entropy_ece() -> None:
    rng = np.random.default_rng(5)
    n, k, passes = 300, 3, 6
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(passes, n, k)) + 2.0 * np.eye(k)[labels]
    samples = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    saved = Predictions("classification", labels, samples.mean(axis=0).astype(np.float32),
                        samples=samples.astype(np.float32))
    metrics, _ = uq_metrics(combine([saved]))
    expected = reference.classification(labels.tolist(), samples.astype(np.float32).tolist())
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value), name


def test_folds_pool_their_held_out_samples_and_mismatched_members_refuse() -> None:
    a = Predictions("regression", np.array([1.0, 2.0]), np.array([1.0, 2.0], np.float32))
    b = Predictions("regression", np.array([3.0]), np.array([4.0], np.float32))
    pooled = concat([combine([a]), combine([b])])
    metrics, _ = uq_metrics(pooled)
    assert len(pooled.y) == 3 and metrics["ensemble_mse"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="different test sets"):
        combine([a, b])


def test_saved_predictions_round_trip_and_a_torn_file_reads_as_none(tmp_path: Path) -> None:
    saved = Predictions("classification", np.array([0, 1]),
                        np.array([[0.9, 0.1], [0.2, 0.8]]), samples=np.ones((3, 2, 2)))
    path = predictions.save(tmp_path, saved)
    back = predictions.load(tmp_path)
    assert back is not None and back.kind == "classification" and back.classes == 2
    assert back.mean.dtype == np.float32 and back.samples is not None
    assert back.samples.shape == (3, 2, 2) and back.y_true.tolist() == [0, 1]
    path.write_bytes(path.read_bytes()[:40])
    assert predictions.load(tmp_path) is None
