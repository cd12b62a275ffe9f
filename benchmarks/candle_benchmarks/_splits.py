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


def seed_sequence(seed: int, *tags: int) -> list[int]:
    """Entropy for ``np.random.default_rng`` from a (possibly negative) seed and tags:
    each design draw (holdout, each tree level) gets its own stream from one seed."""
    return [int(seed) % (1 << 64), *(int(t) % (1 << 64) for t in tags)]


def group_parts(groups: NDArray[np.int64], parts: int,
                seed: int | list[int]) -> NDArray[np.int64]:
    """Part (0..parts-1) of each sample: its group's, the groups shuffled with ``seed`` and
    dealt round-robin (as kfold_assignment's grouped folds), so no group is in two parts."""
    unique = np.unique(groups)
    if parts < 2 or len(unique) < parts:
        raise ValueError(f"cannot split {len(unique)} groups into {parts} parts")
    order = np.random.default_rng(seed).permutation(len(unique))
    part_of = np.empty(len(unique), dtype=np.int64)
    part_of[order] = np.arange(len(unique)) % parts
    return part_of[np.searchsorted(unique, groups)]


def holdout_groups(groups: NDArray[np.int64], fraction: float,
                   seed: int | list[int]) -> NDArray[np.bool_]:
    """Whether each sample's group is among the ``fraction`` of groups (at least one, and
    not all) drawn with ``seed``: a test set no fold trains or validates on."""
    unique = np.unique(groups)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {fraction}")
    count = max(1, round(fraction * len(unique)))
    if count >= len(unique):
        raise ValueError(f"holdout {fraction} of {len(unique)} groups leaves none to train on")
    chosen = np.random.default_rng(seed).choice(unique, count, replace=False)
    return np.isin(groups, chosen)
