"""NT3 data: seeded synthetic normal/tumour pairs, or the upstream CSV files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle_benchmarks._keras import Arrays, maxabs_scale
from candle_benchmarks._splits import fold_indices, kfold_assignment

TRAIN_FILE = "nt_train2.csv"
TEST_FILE = "nt_test2.csv"


def synthesize(params: dict[str, Any]) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Paired normal (0) / tumour (1) samples with log-normal-like expression.

    Each patient contributes a normal and a tumour sample sharing a patient effect, so the
    classes differ only in a subset of genes (``signal_genes``) by ``signal_strength``
    log-fold: learnable, but not from any single feature at a glance.
    """
    rng = np.random.default_rng(int(params["rng_seed"]))
    n_features = int(params["features"])
    n_samples = int(params["samples"])
    patients = (n_samples + 1) // 2
    baseline = rng.normal(0.0, 2.0, n_features)  # many low genes, a few high: RNA-seq-like
    signal = np.zeros(n_features)
    n_signal = max(1, int(params["signal_genes"] * n_features))
    chosen = rng.choice(n_features, n_signal, replace=False)
    signal[chosen] = rng.choice([-1.0, 1.0], n_signal) * float(params["signal_strength"])
    patient = rng.normal(0.0, 0.5, (patients, n_features))
    normal = baseline + patient + rng.normal(0.0, 0.5, (patients, n_features))
    tumour = baseline + patient + signal + rng.normal(0.0, 0.5, (patients, n_features))
    # log2(1 + expression): the log scale upstream files hold, heavy-tailed underneath.
    x = np.log2(1.0 + np.exp(np.concatenate([normal, tumour]))).astype(np.float32)
    y = np.concatenate([np.zeros(patients), np.ones(patients)]).astype(np.int64)
    order = rng.permutation(len(y))[:n_samples]
    return x[order], y[order]


def split_train_test(
    x: NDArray[np.float32], y: NDArray[np.int64], test_fraction: float, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(y))
    n_test = max(1, round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def load_csv_pair(directory: Path, train: str, test: str) -> tuple[
    NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]
]:
    """Upstream layout: no header, label in column 0, features after. Parsed once, then
    memory-mapped from the cache beside the files."""
    from candle_benchmarks.cache import cached_arrays
    from candle_benchmarks.io import DataFileError, read_labelled_csv

    def read(path: Path) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        if not path.is_file():
            raise DataFileError(f"{path}: no such file")
        x, y = cached_arrays(path, read_labelled_csv, ("x", "y"))
        return x, y

    x_train, y_train = read(directory / train)
    x_test, y_test = read(directory / test)
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"{directory / test}: {x_test.shape[1] + 1} columns, but "
                         f"{train} has {x_train.shape[1] + 1}")
    return x_train, y_train, x_test, y_test


def _check_labels(directory: Path, files: tuple[str, str],
                  labels: tuple[NDArray[np.int64], NDArray[np.int64]], classes: int) -> None:
    """A label outside 0..classes-1 names its file (to_categorical would fail obscurely)."""
    from candle_benchmarks.io import DataFileError

    for name, values in zip(files, labels, strict=True):
        bad = values[(values < 0) | (values >= classes)]
        if bad.size:
            raise DataFileError(f"{directory / name}: label {int(bad[0])} outside "
                                f"0..{classes - 1} (classes={classes})")


def load(params: dict[str, Any], fold: int | None, folds: int | None, cv_seed: int,
         stratify: bool, classes: int,
         files: tuple[str, str] = (TRAIN_FILE, TEST_FILE),
         synth: Any = None) -> Arrays:
    """Train/validation arrays for one job: the test set, or CV fold ``fold`` of train."""
    if params["data"] == "synthetic":
        x, y = (synth or synthesize)(params)
        x_train, y_train, x_test, y_test = split_train_test(
            x, y, float(params["test_fraction"]), int(params["rng_seed"]))
    else:
        directory = Path(params["data"])
        x_train, y_train, x_test, y_test = load_csv_pair(directory, *files)
        _check_labels(directory, files, (y_train, y_test), classes)
    x_train, x_test = maxabs_scale(x_train, x_test)
    assignment = None
    if fold is not None and folds is not None:
        assignment = kfold_assignment(len(y_train), folds, cv_seed,
                                      labels=y_train if stratify else None)
        train_idx, val_idx = fold_indices(assignment, fold)
        x_val, y_val = x_train[val_idx], y_train[val_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
    else:
        x_val, y_val = x_test, y_test
    eye = np.eye(classes, dtype=np.float32)
    return Arrays(x_train[..., None], eye[y_train], x_val[..., None], eye[y_val],
                  kind="classification", predict_y=y_val, fold_assignment=assignment)
