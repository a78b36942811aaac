"""Splits by case, never by slice: a case's slices all land on one side. Reproducible from a seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nephroseg.recipe import SplitSpec


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str] = field(default_factory=list)


def _shuffled(case_ids: list[str], seed: int) -> list[str]:
    ordered = sorted(set(case_ids))
    if len(ordered) != len(case_ids):
        raise ValueError("case ids must be unique")
    return [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]


def holdout_split(
    case_ids: list[str], seed: int, n_val: int | None = None, val_fraction: float = 0.15
) -> Split:
    """A fixed train/validation split (seed 004: 180/30; seed 000: train/test)."""
    shuffled = _shuffled(case_ids, seed)
    if n_val is None:
        n_val = max(1, round(len(shuffled) * val_fraction))
    if not 1 <= n_val < len(shuffled):
        raise ValueError(f"cannot hold out {n_val} of {len(shuffled)} cases")
    return Split(train=sorted(shuffled[n_val:]), val=sorted(shuffled[:n_val]))


def ratio_split(
    case_ids: list[str], seed: int, ratios: tuple[float, float, float] = (0.7, 0.2, 0.1)
) -> Split:
    """Train/validation/test by ratio (seed 003: 7:2:1); every part gets at least one case."""
    shuffled = _shuffled(case_ids, seed)
    n = len(shuffled)
    if n < 3:
        raise ValueError(f"a ratio split needs at least 3 cases, got {n}")
    total = float(sum(ratios))
    n_val = max(1, round(n * ratios[1] / total))
    n_test = max(1, round(n * ratios[2] / total))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"ratios {ratios} leave no training case out of {n}")
    return Split(
        train=sorted(shuffled[:n_train]),
        val=sorted(shuffled[n_train : n_train + n_val]),
        test=sorted(shuffled[n_train + n_val :]),
    )


def kfold_splits(case_ids: list[str], seed: int, folds: int = 5) -> list[Split]:
    """k-fold cross-validation (seed 001: 5 folds): each case is validated in exactly one fold."""
    shuffled = _shuffled(case_ids, seed)
    if folds > len(shuffled):
        raise ValueError(f"{folds} folds need at least {folds} cases, got {len(shuffled)}")
    parts = [shuffled[i::folds] for i in range(folds)]
    return [
        Split(train=sorted(c for j, part in enumerate(parts) if j != i for c in part), val=sorted(parts[i]))
        for i in range(folds)
    ]


def make_split(case_ids: list[str], spec: SplitSpec, seed: int) -> Split:
    if spec.kind == "holdout":
        return holdout_split(case_ids, seed, spec.val_cases, spec.val_fraction)
    if spec.kind == "ratio":
        return ratio_split(case_ids, seed, spec.ratios)
    if spec.fold >= spec.folds:
        raise ValueError(f"fold {spec.fold} does not exist with {spec.folds} folds")
    return kfold_splits(case_ids, seed, spec.folds)[spec.fold]
