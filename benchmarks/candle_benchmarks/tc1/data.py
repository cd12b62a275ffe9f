"""TC1 data: seeded synthetic tumour types, or the upstream type_18_300 CSV files."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle_benchmarks._keras import Arrays
from candle_benchmarks.nt3 import data as nt3_data

TRAIN_FILE = "type_18_300_train.csv"
TEST_FILE = "type_18_300_test.csv"


def synthesize(params: dict[str, Any]) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """``classes`` tumour types, each switching its own gene programme up or down.

    Every class owns a random subset (``signal_genes``) of genes shifted by
    ``signal_strength`` log-fold on a shared log-normal baseline, plus per-sample noise:
    separable only by combining many genes, like real expression subtypes.
    """
    rng = np.random.default_rng(int(params["rng_seed"]))
    n_features = int(params["features"])
    n_samples = int(params["samples"])
    classes = int(params["classes"])
    if classes < 2 or n_samples < classes:
        raise ValueError(f"need at least 2 classes and one sample per class, got "
                         f"classes={classes}, samples={n_samples}")
    baseline = rng.normal(2.0, 1.0, n_features)
    n_signal = max(1, int(float(params["signal_genes"]) * n_features))
    strength = float(params["signal_strength"])
    y = np.arange(n_samples, dtype=np.int64) % classes
    rng.shuffle(y)
    x = np.empty((n_samples, n_features), dtype=np.float32)
    programmes = np.zeros((classes, n_features), dtype=np.float32)
    for label in range(classes):
        genes = rng.choice(n_features, n_signal, replace=False)
        programmes[label, genes] = rng.choice([-1.0, 1.0], n_signal) * strength
    for start in range(0, n_samples, 256):  # chunks keep peak memory at 60k features low
        stop = min(n_samples, start + 256)
        noise = rng.normal(0.0, 0.5, (stop - start, n_features))
        x[start:stop] = np.exp(baseline + programmes[y[start:stop]] + noise)
    return x, y


def load(params: dict[str, Any], fold: int | None, folds: int | None, cv_seed: int,
         stratify: bool) -> Arrays:
    """NT3's loader with TC1's files and synthesizer: upstream validates on the test file,
    CV folds split train, and out-of-range labels are an error naming the file."""
    return nt3_data.load(params, fold, folds, cv_seed, stratify, int(params["classes"]),
                         files=(TRAIN_FILE, TEST_FILE), synth=synthesize)
