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
