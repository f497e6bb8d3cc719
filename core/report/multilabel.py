"""Multi-label metrics (numpy; tests/test_multilabel.py checks them against scikit-learn): mAP and
per-class average precision from the sigmoid scores, and at the per-class thresholds: per-class
precision/recall/F1, micro and macro F1, exact-match ratio, label cardinality."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from clf.artifacts.labels import apply_thresholds


def precision_recall_curve(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` of one class, one point per distinct score from the
    highest down (scikit-learn's points, in the other order and without its final (1, 0))."""
    y = np.asarray(targets, np.float64) > 0.5
    s = np.asarray(scores, np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # the last row of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    positives = max(int(y.sum()), 1)
    return tp / (tp + fp), tp / positives, s[last]


def average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """Area under the step precision-recall curve, sum of (R_n - R_n-1) P_n, as scikit-learn's
    ``average_precision_score``; NaN for a class without positives (left out of the mean)."""
    if not np.any(np.asarray(targets) > 0.5):
        return float("nan")
    precision, recall, _ = precision_recall_curve(targets, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_cross_entropy(targets: np.ndarray, scores: np.ndarray) -> float:
    """Mean over images and classes (Keras' binary cross-entropy, its clipping included)."""
    p = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(targets, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else 0.0


def _f1(tp: float, fp: float, fn: float) -> float:
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def multilabel_report(targets: np.ndarray, scores: np.ndarray, thresholds: Sequence[float],
                      class_names: Sequence[str]) -> dict[str, Any]:
    """Everything clf reports about one labelled multi-label set, as plain data."""
    y = np.asarray(targets, np.float64).reshape(-1, len(class_names)) > 0.5
    s = np.asarray(scores, np.float64).reshape(len(y), len(class_names))
    predicted = apply_thresholds(s, thresholds)
    tp = (y & predicted).sum(axis=0)
    fp = (~y & predicted).sum(axis=0)
    fn = (y & ~predicted).sum(axis=0)
    per_class = {}
    aps = []
    for c, name in enumerate(class_names):
        ap = average_precision(y[:, c], s[:, c])
        aps.append(ap)
        per_class[name] = {
            "average_precision": None if np.isnan(ap) else ap,
            "precision": float(tp[c] / (tp[c] + fp[c])) if tp[c] + fp[c] else 0.0,
            "recall": float(tp[c] / (tp[c] + fn[c])) if tp[c] + fn[c] else 0.0,
            "f1": _f1(tp[c], fp[c], fn[c]),
            "support": int(y[:, c].sum()),
            "threshold": float(thresholds[c]),
        }
    measured = [a for a in aps if not np.isnan(a)]
    return {
        "task": "multilabel",
        "images": int(len(y)),
        "map": float(np.mean(measured)) if measured else 0.0,
        "macro_f1": float(np.mean([v["f1"] for v in per_class.values()])) if per_class else 0.0,
        "micro_f1": _f1(tp.sum(), fp.sum(), fn.sum()),
        "exact_match": float(np.mean(np.all(y == predicted, axis=1))) if len(y) else 0.0,
        "label_cardinality": float(y.sum(axis=1).mean()) if len(y) else 0.0,
        "predicted_cardinality": float(predicted.sum(axis=1).mean()) if len(y) else 0.0,
        "loss": binary_cross_entropy(y, s),
        "per_class": per_class,
        "class_names": list(class_names),
    }
