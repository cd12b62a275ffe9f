"""Deterministic k-fold splits: plain, stratified by label, or grouped (leave groups out)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def kfold_assignment(
    n: int,
    folds: int,
    seed: int,
    labels: NDArray[np.int64] | None = None,
    groups: NDArray[np.int64] | None = None,
) -> NDArray[np.int64]:
    """Fold number (0..folds-1) of each of ``n`` samples; same inputs, same answer."""
    if folds < 2 or folds > n:
        raise ValueError(f"cannot split {n} samples into {folds} folds")
    rng = np.random.default_rng(seed)
    assignment = np.empty(n, dtype=np.int64)
    if groups is not None:
        unique = rng.permutation(np.unique(groups))
        group_fold = {g: i % folds for i, g in enumerate(unique)}
        return np.array([group_fold[g] for g in groups], dtype=np.int64)
    if labels is None:
        order = rng.permutation(n)
        assignment[order] = np.arange(n) % folds
        return assignment
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        # Continue the round-robin across classes so fold sizes stay balanced.
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return assignment


def fold_indices(
    assignment: NDArray[np.int64], fold: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(train indices, validation indices) for ``fold``."""
    return np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)
