"""A job's test-set predictions: one ``predictions.npz`` per job (rank 0 writes it,
atomically), compact float32 arrays that `candle summary` combines across replicas.

Keys: ``kind`` ("regression" | "classification"), ``y_true`` (n,) targets or class labels,
``mean`` (n,) point predictions or (n, k) class probabilities, and optionally ``sigma``
(n,) a predicted standard deviation (heteroscedastic loss), ``quantiles`` (n, q) with
``quantile_levels`` (q,) (quantile loss), ``samples`` (S, n[, k]) MC-dropout passes.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.store.atomic import atomic_write_bytes

FILE = "predictions.npz"
KINDS = ("regression", "classification")


@dataclass
class Predictions:
    kind: str
    y_true: NDArray[Any]
    mean: NDArray[np.float32]
    sigma: NDArray[np.float32] | None = None
    quantiles: NDArray[np.float32] | None = None
    quantile_levels: NDArray[np.float32] | None = None
    samples: NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"prediction kind must be one of {KINDS}, got {self.kind!r}")
        n = len(self.y_true)
        if len(self.mean) != n:
            raise ValueError(f"{len(self.mean)} predictions for {n} targets")

    @property
    def classes(self) -> int:
        return int(self.mean.shape[1]) if self.kind == "classification" else 0


def save(job_dir: Path, predictions: Predictions) -> Path:
    """Write ``job_dir/predictions.npz`` atomically (tmp + fsync + rename)."""
    arrays: dict[str, NDArray[Any]] = {
        "kind": np.array(predictions.kind),
        "y_true": (np.asarray(predictions.y_true, dtype=np.int64)
                   if predictions.kind == "classification"
                   else np.asarray(predictions.y_true, dtype=np.float32)),
        "mean": np.asarray(predictions.mean, dtype=np.float32),
    }
    for name in ("sigma", "quantiles", "quantile_levels", "samples"):
        value = getattr(predictions, name)
        if value is not None:
            arrays[name] = np.asarray(value, dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = Path(job_dir) / FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load(job_dir: Path) -> Predictions | None:
    """The job's predictions, or None when it saved none (or the file is unreadable)."""
    path = Path(job_dir) / FILE
    try:
        with np.load(path, allow_pickle=False) as data:
            found = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    try:
        return Predictions(
            kind=str(found["kind"]), y_true=found["y_true"], mean=found["mean"],
            sigma=found.get("sigma"), quantiles=found.get("quantiles"),
            quantile_levels=found.get("quantile_levels"), samples=found.get("samples"))
    except (KeyError, ValueError):
        return None
