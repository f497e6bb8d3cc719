"""Multi-label metrics (numpy; tests/test_multilabel.py checks them against scikit-learn): mAP and
per-class average precision from the sigmoid scores, and at the per-class thresholds: per-class
precision/recall/F1, micro and macro F1, exact-match ratio, label cardinality."""

from __future__ import annotations

from pathlib import Path
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


# host: a clf.host.manager.PluginHost (report imports no host, so Any here)
def evaluate_labels_file(model: str | Path, data: str | Path, out: Path, *, batch_size: int = 32, host: Any = None,
                         observer: Any = None, trust_artifact: bool = False, runtime: str = "tensorflow") -> Any:
    """``clf evaluate RUN --data labels.csv``: the model on a labels file's rows (every row,
    whatever its split). A multi-label model gets ``multilabel_report`` at its recorded thresholds
    (and ``pr_curves.png``); a single-label one the folder evaluation's report (one label a row).
    Returns a ``clf.report.evaluation.FolderEvaluation``."""
    from clf.artifacts.labels import is_multilabel
    from clf.artifacts.predict import load_predictor, predict_files
    from clf.data.labels_file import read_labels_file
    from clf.errors import DataError
    from clf.events import Observer
    from clf.report.evaluation import FolderEvaluation
    from clf.report.metrics import cross_entropy, evaluation_report
    from clf.report.runrecord import write_evaluation, write_pr_curves

    observer = observer or Observer()
    predictor = load_predictor(model, host, fmt="auto", trust=trust_artifact, runtime=runtime)
    names = list(predictor.class_names)
    rows = read_labels_file(data)
    strange = sorted({label for r in rows for label in r.labels} - set(names))
    if strange:
        raise DataError(f"Labels file {str(data)!r} has label(s) {', '.join(map(repr, strange[:10]))} the model "
                        f"does not know; expected the model's classes ({', '.join(names)}). Fix or drop those rows.")
    multilabel = is_multilabel(predictor.labels)
    if not multilabel and any(len(r.labels) != 1 for r in rows):
        r = next(r for r in rows if len(r.labels) != 1)
        raise DataError(f"Labels file {str(data)!r} line {r.line} has {len(r.labels)} labels but the model gives one "
                        f"class a photo; expected one label a row. Evaluate a multi-label model with it.")
    observer.phase_start("predict", total=len(rows), unit="image")
    results = predict_files(predictor, [r.path for r in rows], batch_size,
                            progress=lambda n: observer.phase_advance("predict", n))
    observer.phase_end("predict")
    ok = [i for i, r in enumerate(results) if r.error is None]
    scores = np.array([results[i].probabilities for i in ok], float).reshape(len(ok), len(names))
    index = {n: i for i, n in enumerate(names)}
    out.mkdir(parents=True, exist_ok=True)
    if multilabel:
        y = np.zeros((len(ok), len(names)))
        for row, i in enumerate(ok):
            y[row, [index[label] for label in rows[i].labels]] = 1
        report = multilabel_report(y, scores, predictor.labels["thresholds"], names)
    else:
        labels = np.array([index[rows[i].labels[0]] for i in ok], int)
        report = evaluation_report(labels, scores, names, loss=cross_entropy(labels, scores))
    report.update(data=str(data), model=str(model), runtime=predictor.runtime)
    written = write_evaluation(out, {"evaluation": report}, "evaluation")
    if multilabel:
        written.append(write_pr_curves(out, y, scores, names, report, "evaluation"))
    return FolderEvaluation(report, out, written, [(r.path, r.error) for r in results if r.error],
                            notes=list(predictor.notes), predictions=results)
