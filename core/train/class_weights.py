"""Class weights for imbalanced training sets: 'balanced' gives every class the same total
weight, n_samples / (n_classes * n_c) (scikit-learn's definition)."""

from __future__ import annotations

from typing import Any, Sequence

# 'auto' balances at the dataset doctor's imbalance threshold.
from clf.data.doctor import IMBALANCE_RATIO


def balanced_weights(counts: Sequence[int]) -> dict[int, float]:
    """``{class index: weight}`` from per-class training counts; empty classes get none."""
    total, present = sum(counts), sum(1 for c in counts if c > 0)
    return {i: total / (present * c) for i, c in enumerate(counts) if c > 0}


def choose_class_weights(mode: str, counts: Sequence[int],
                         class_names: Sequence[str]) -> tuple[dict[int, float] | None, str | None]:
    """``(weights or None, note or None)`` for ``--class-weight auto|balanced|none``."""
    if mode == "none" or not counts:
        return None, None
    present = [c for c in counts if c > 0]
    ratio = max(present) / min(present) if present else 1.0
    note = None
    if mode == "auto":
        if ratio <= IMBALANCE_RATIO:
            return None, None
        largest = class_names[max(range(len(counts)), key=lambda i: counts[i])]
        smallest = class_names[min((i for i in range(len(counts)) if counts[i] > 0), key=lambda i: counts[i])]
        note = (f"Training classes are imbalanced ({largest!r} has {ratio:.1f}x the images of "
                f"{smallest!r}, over {IMBALANCE_RATIO:g}x): using balanced class weights. "
                f"Pass --class-weight none to turn this off.")
    return balanced_weights(counts), note


def noted_imbalance(report: Any) -> bool:
    """Whether the dataset doctor already noted the imbalance (it does above the same ratio), so
    no second note is needed."""
    return report is not None and (report.imbalance() or 0.0) > IMBALANCE_RATIO


def label_weights(mode: str, targets: Any, class_names: Sequence[str]) -> tuple[Any, str | None]:
    """Multi-label: ``([2, classes] array of each label's negative and positive weight, or None,
    note or None)``. Each label is its own two-class problem, balanced alone: ``balanced``
    balances every label, ``auto`` those whose positives and negatives differ over
    ``IMBALANCE_RATIO`` times (weights ``n / (2 n_pos)`` and ``n / (2 n_neg)``)."""
    import numpy as np

    y = np.asarray(targets) > 0.5
    n = len(y)
    if mode == "none" or n == 0:
        return None, None
    pos = y.sum(axis=0).astype(np.float64)
    neg = n - pos
    ratio = np.maximum(pos, neg) / np.maximum(np.minimum(pos, neg), 1.0)
    chosen = (pos > 0) & (neg > 0) & ((ratio > IMBALANCE_RATIO) if mode == "auto" else True)
    if not chosen.any():
        return None, None
    weights = np.ones((2, y.shape[1]))
    weights[0, chosen] = n / (2 * neg[chosen])
    weights[1, chosen] = n / (2 * pos[chosen])
    note = None
    if mode == "auto":
        names = [class_names[int(i)] for i in np.flatnonzero(chosen)]
        note = (f"Label(s) {', '.join(map(repr, names[:8]))}{' ...' if len(names) > 8 else ''} are on over "
                f"{IMBALANCE_RATIO:g}x more or fewer training images than they are off: their positives and "
                f"negatives are balanced. Pass --class-weight none to turn this off.")
    return weights, note
