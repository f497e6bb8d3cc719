"""The known score (clf.train.unknown) of every inspected image, for the outliers: each
training image's out of fold, as the run calibrated its threshold, and each validation image's
from the full fit. A run with a known score is scored with its own kind, statistics,
``accept_known`` and threshold (the exported layer's weights); a run without one (trained with
``--unknown off``, before clf had it, or with a fine-tuned backbone, whose features change) gets
the score ``--unknown auto`` would have chosen, calibrated here on the inspected features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clf.train.oof import fold_class_weight
from clf.train import linear_head
from clf.train.unknown import HEAD_KINDS, VIM_DIM, calibrate, choose_kind, raw_scores, score_inputs

if TYPE_CHECKING:
    from clf.inspect.saved_run import RunModel, SavedRun


@dataclass
class KnownScores:
    score: np.ndarray  # [n] raw score per image, higher: more like the training images
    threshold: float  # in the score's units; below it an image is "unknown"
    kind: str  # vim, maha, energy or max-softmax
    accept_known: float  # the share of training images the threshold accepts, out of fold
    source: str  # "run": the run's own score and threshold; "computed": calibrated here
    why: str  # how the kind was chosen


def known_scores(run: SavedRun, parts: RunModel, features: np.ndarray, labels: np.ndarray,
                 split: np.ndarray) -> KnownScores | None:
    """Raw known scores of the rows (``split`` 0: training, out of fold; 1: validation); None
    when a class has fewer than 2 training images (no out-of-fold score)."""
    train, val = split == 0, split == 1
    x, y = np.asarray(features[train], np.float32), np.asarray(labels[train], np.int64)
    classes = len(run.class_names)
    if len(y) == 0 or np.bincount(y, minlength=classes).min() < 2:
        return None
    head_record = (run.manifest.get("training") or {}).get("head") or {}
    l2 = float(head_record["l2"]) if head_record.get("l2") else None
    options: dict[str, Any] = {"l2": l2, "class_weight": fold_class_weight(run.config.class_weight, y, run.class_names)}
    record = run.labels.get("unknown")
    if record and parts.known is not None:
        layer = parts.known
        kind, accept, source, why = str(record["score"]), float(record["accept_known"]), "run", str(record["chosen"])

        def weight(name: str) -> np.ndarray:  # the exported layer's statistics, as calibrate's inputs
            return np.asarray(getattr(layer, name).numpy(), np.float64)

        center, spread = weight("center"), weight("spread")
        head = (weight("kernel"), weight("bias")) if kind in HEAD_KINDS else None
        dim = int(record.get("params", {}).get("dim", VIM_DIM))
        _, oof, _ = calibrate(kind, x, y, classes, center=center, spread=spread, accept_known=accept, head=head,
                              dim=dim, **options)
        threshold = float(record["score_threshold"])
    else:
        layers = linear_head.linear_layers(parts.head)
        found, why = choose_kind("auto", solved=layers is not None and head_record.get("solver") == "lbfgs",
                                 cached=True)
        kind, accept, source = str(found), float(run.config.accept_known), "computed"
        head, center, spread = score_inputs(kind, layers, x)
        layer, oof, _ = calibrate(kind, x, y, classes, center=center, spread=spread, accept_known=accept,
                                  head=head, dim=min(VIM_DIM, len(y) // 2), **options)
        threshold = float(layer.calibration.numpy()[1])
    score = np.zeros(len(labels))
    score[train] = oof
    if val.any():
        score[val] = raw_scores(layer, np.asarray(features[val], np.float32))
    return KnownScores(score, threshold, kind, accept, source, why)
