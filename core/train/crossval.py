"""``clf run --folds K``: how sure the accuracy is. Every labelled image (training and
validation splits, clean copies only) is scored by a head fitted without it, through the same
out-of-fold heads ``clf inspect`` uses (clf.train.oof: solved like the run's head, at the run's
L2 strength, or trained by Keras fit with the run's settings). Each fold's accuracy, macro F1
and per-class recall give a mean, a 95% Student t interval over the K folds and the
prediction interval of one split's score. The exported
model is the run's own, trained on the training split as without --folds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from clf.report.confidence import LEVEL, t_interval
from clf.report.metrics import evaluation_report
from clf.train.oof import OutOfFold, out_of_fold, solved_out_of_fold

if TYPE_CHECKING:
    from clf.train.extraction import Extracted
    from clf.train.setup import Setup

INTERVAL = (f"{LEVEL:.0%} Student t interval over the fold scores: mean -/+ t(0.975, K-1) * sd / sqrt(K); "
            f"split_low/split_high: where one split's score lands, mean -/+ t(0.975, K-1) * sd * sqrt(1 + 1/K)")


def labelled_features(extracted: Extracted, n_clean: int) -> tuple[np.ndarray, np.ndarray]:
    """The clean training rows and the validation rows, stacked: every labelled image once."""
    parts = [(extracted["train"], n_clean), (extracted["validation"], None)]
    rows = [(f.features[:n], f.labels[:n]) for f, n in parts if f is not None]
    return (np.concatenate([x for x, _ in rows]).astype(np.float32),
            np.concatenate([y for _, y in rows]).astype(np.int64))


def cross_validate(setup: Setup, features: np.ndarray, labels: np.ndarray, class_names: list[str],
                   head_info: dict[str, Any]) -> dict[str, Any]:
    """The --folds report (what metrics.json's ``cross_validation`` holds). ``head_info``: how
    the run fitted its head (``Fitted.info``); a solved head's folds are solved at its L2."""
    config = setup.config
    if head_info.get("solver") == "lbfgs":
        oof = solved_out_of_fold(features, labels, class_names, class_weight=config.class_weight,
                                 seed=config.seed, folds=config.folds, l2=float(head_info["l2"]), tight=False)
    else:
        oof = out_of_fold(features, labels, class_names, head=setup.head, config=config, folds=config.folds)
    report = fold_report(oof, labels, class_names)
    report["seed"] = config.seed  # no timing here: metrics.json repeats exactly (manifest.json has the seconds)
    return report


def fold_report(oof: OutOfFold, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Per-fold scores of ``oof`` and their t intervals; ``pooled``: every image's out-of-fold
    prediction scored at once."""
    labels = np.asarray(labels, np.int64)
    per_fold = [evaluation_report(labels[oof.fold == f], oof.probabilities[oof.fold == f], class_names)
                for f in range(oof.folds)]
    pooled = evaluation_report(labels, oof.probabilities, class_names)
    return {
        "folds": oof.folds,
        "images": int(len(labels)),
        "splits": "train + validation",
        "heads": oof.method,  # "solved" or "keras"
        "l2": oof.l2,
        "interval": INTERVAL,
        "accuracy": t_interval([r["accuracy"] for r in per_fold]),
        "macro_f1": t_interval([r["macro_f1"] for r in per_fold]),
        "per_class_recall": {name: t_interval([r["per_class"][name]["recall"] for r in per_fold])
                             for name in class_names},
        "fold_images": [r["images"] for r in per_fold],
        "pooled": {"accuracy": pooled["accuracy"], "macro_f1": pooled["macro_f1"]},
    }
