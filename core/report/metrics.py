"""Classification metrics from labels and probabilities: numpy only, no TensorFlow, as plain
JSON-ready data (what ``metrics.json`` holds)."""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

import numpy as np
from clf.errors import DataError
from clf.files import csv_cell

TOP_K = (2, 3, 5)  # reported only where k < number of classes (top-n accuracy is always 1)


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = images of true class i predicted as class j."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class; 0 for a zero denominator (as scikit-learn's zero_division=0)."""
    tp = np.diag(cm).astype(float)
    predicted, support = cm.sum(axis=0).astype(float), cm.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def top_k_accuracy(y_true: Sequence[int] | np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Fraction of images whose true class is among the ``k`` most probable ones."""
    probs = np.asarray(probabilities)
    if len(probs) == 0:
        return 0.0
    # Stable sort on the negated probabilities: ties go to the lower class index, as argmax does.
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def most_confused(cm: np.ndarray, class_names: Sequence[str], limit: int = 5) -> list[dict[str, Any]]:
    """The off-diagonal cells with the most images, largest first (ties by class order)."""
    cm = np.asarray(cm)
    off = np.where(np.eye(len(cm), dtype=bool), 0, cm)
    rows, cols = np.nonzero(off)
    order = np.argsort(-off[rows, cols], kind="stable")[:limit]  # stable: ties keep class order
    support = cm.sum(axis=1)
    return [{"true": class_names[i], "predicted": class_names[j], "count": int(cm[i, j]),
             "fraction_of_true": float(cm[i, j] / support[i]) if support[i] else 0.0}
            for i, j in zip(rows[order].tolist(), cols[order].tolist())]


def evaluation_report(y_true: Sequence[int] | np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                      loss: float | None = None) -> dict[str, Any]:
    """Everything clf reports about one labelled set of images, as plain data."""
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probabilities, dtype=float).reshape(len(y_true), len(class_names))
    n = len(class_names)
    y_pred = np.argmax(probs, axis=1) if len(probs) else np.zeros(0, int)
    cm = confusion_matrix(y_true, y_pred, n)
    scores = per_class_scores(cm)
    total = int(cm.sum())
    return {
        "images": total,
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "top_k_accuracy": {str(k): top_k_accuracy(y_true, probs, k) for k in TOP_K if k < n},
        "macro_f1": float(np.mean(scores["f1"])) if n else 0.0,
        # precision, recall, f1 (floats) and support (an int) per class
        "per_class": {name: {key: column[i].item() for key, column in scores.items()}
                      for i, name in enumerate(class_names)},
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
        "most_confused": most_confused(cm, class_names),
        **({"loss": float(loss)} if loss is not None else {}),
    }


def confusion_matrix_csv(report: dict[str, Any]) -> str:
    """The confusion matrix as CSV, header ``true\\predicted,<classes>`` (names quoted by ``clf.files.csv_cell``)."""
    names = [csv_cell(n) for n in report["class_names"]]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true\\predicted", *names])
    writer.writerows([name, *row] for name, row in zip(names, report["confusion_matrix"]))
    return buf.getvalue()


def cross_entropy(y_true: Sequence[int] | np.ndarray, probabilities: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy (Keras clips probabilities the same way)."""
    probs = np.clip(np.asarray(probabilities, float), 1e-7, 1 - 1e-7)
    y = np.asarray(y_true, int)
    return float(-np.mean(np.log(probs[np.arange(len(y)), y]))) if len(y) else 0.0


# Unknown-photo metrics: the known score separating known images (positives) from unknown
# ones; numpy here, as evaluate needs no scikit-learn (tests/test_unknown_evaluate.py checks
# both against sklearn.metrics).
KNOWN_TPR = 0.95  # FPR@95TPR: the false-positive rate where 95% of the known images are kept


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Area under the ROC curve of a score higher for ``known`` than ``unknown`` rows: the chance
    a random known image outscores a random unknown one, ties counting half (Mann-Whitney U)."""
    known, unknown = _both("AUROC", known, unknown)
    both = np.concatenate([known, unknown])
    order = np.argsort(both, kind="stable")
    _, first, counts = np.unique(both[order], return_index=True, return_counts=True)
    ranks = np.empty(len(both))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based; tied scores share their mean rank
    u = ranks[:len(known)].sum() - len(known) * (len(known) + 1) / 2.0
    return float(u / (len(known) * len(unknown)))


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = KNOWN_TPR) -> float:
    """Share of ``unknown`` scores at or above the highest threshold that keeps at least ``tpr``
    of the ``known`` ones (FPR@95TPR for the default; as sklearn's ROC curve reads it)."""
    known, unknown = _both("FPR at a TPR", known, unknown)
    known = np.sort(known)[::-1]
    # The fewest top known scores whose share reaches tpr, compared as the ROC curve's ratios are.
    needed = int(np.searchsorted(np.arange(1, len(known) + 1) / len(known), tpr)) + 1
    threshold = known[min(needed, len(known)) - 1]
    return float(np.mean(unknown >= threshold))


def _both(metric: str, known: np.ndarray, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    known, unknown = np.asarray(known, float).ravel(), np.asarray(unknown, float).ravel()
    if not len(known) or not len(unknown):
        raise DataError(f"{metric} compares known and unknown images' scores, but got {len(known)} known and "
                        f"{len(unknown)} unknown score(s); expected at least one of each. Pass both.")
    return known, unknown
