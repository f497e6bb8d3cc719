"""Which images look wrong: suspected label issues, the worst validation errors, outliers,
near duplicates; and how far the model's confidence is from its accuracy (calibration).
Label issues come from cleanlab (confident learning on out-of-fold probabilities) rather than
a formula of our own; outliers from the known score that rejects unknown photos
(clf.inspect.known), so inspection and the exported model agree on what looks unlike the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

# cleanlab's default; on planted flips it ranks at least as well as the other methods
# (see benchmarks/label_noise.py).
QUALITY_METHOD = "self_confidence"


@dataclass
class LabelIssues:
    quality: np.ndarray  # [n] label quality score in [0, 1]; low: the label looks wrong
    ranking: np.ndarray  # every index, lowest quality first
    flagged: np.ndarray  # [n] bool: cleanlab's confident-learning verdict
    suggested: np.ndarray  # [n] the most probable other class


def label_issues(labels: np.ndarray, probabilities: np.ndarray) -> LabelIssues:
    """Rank every image by how likely its given label is wrong (``probabilities``: out-of-fold)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    quality = get_label_quality_scores(labels, probabilities, method=QUALITY_METHOD)
    # n_jobs=1: cleanlab would otherwise fork workers from a process running TensorFlow.
    flagged = find_label_issues(labels, probabilities, n_jobs=1)
    others = probabilities.copy()
    others[np.arange(len(labels)), labels] = -1.0
    return LabelIssues(quality, np.argsort(quality, kind="stable"), np.asarray(flagged, bool),
                       others.argmax(axis=1))


@dataclass
class Errors:
    indices: np.ndarray  # misclassified rows, highest loss first
    predicted: np.ndarray  # [n] argmax class of every row
    loss: np.ndarray  # [n] cross-entropy of the true class


def worst_errors(labels: np.ndarray, probabilities: np.ndarray) -> Errors:
    """Misclassified rows of ``probabilities`` (the run's model on validation), worst first."""
    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    predicted = probabilities.argmax(axis=1)
    loss = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0))
    wrong = np.flatnonzero(predicted != labels)
    return Errors(wrong[np.argsort(-loss[wrong], kind="stable")], predicted, loss)


@dataclass
class Outliers:
    score: np.ndarray  # [n] raw known score; low: unlike the training images
    ranking: np.ndarray  # every index, lowest score first
    flagged: np.ndarray  # [n] bool: below the threshold


def outliers(score: np.ndarray, threshold: float) -> Outliers:
    """Images whose known score (``clf.inspect.known``) falls below ``threshold``: those the
    model would call unknown photos."""
    score = np.asarray(score, float)
    return Outliers(score, np.argsort(score, kind="stable"), score < threshold)


# Near duplicates: a resized or re-encoded copy has other bytes (the doctor finds only identical
# files) but nearly the same features; it matters across splits (it inflates validation scores)
# or classes (one photo, two labels). Closeness depends on the backbone, so the bar is relative:
# cosine distance at most RATIO times the median nearest-neighbour distance, which on real photos
# puts re-encoded and lightly cropped copies well under it and distinct photos well over it.
RATIO = 0.4
CHUNK = 1024  # rows of the similarity matrix held at once (memory: CHUNK x n floats)


@dataclass
class Pair:
    a: int
    b: int
    similarity: float  # cosine similarity of the two images' features
    cross_split: bool
    cross_class: bool


def _blocks(x: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, similarities of CHUNK rows to every row, self-similarity removed)``."""
    for start in range(0, len(x), CHUNK):
        sims = x[start:start + CHUNK] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        yield start, sims


def near_duplicates(features: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> list[Pair]:
    """Pairs ``a < b`` close enough to be copies: leaks and cross-class pairs first, then closest."""
    if len(features) < 3:
        return []
    raw = np.asarray(features, np.float32)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    x = raw / np.where(norms > 0, norms, 1.0)  # unit rows: dot products are cosine similarities
    nearest = np.concatenate([sims.max(axis=1) for _, sims in _blocks(x)])
    bar = 1.0 - RATIO * float(np.median(1.0 - nearest))
    pairs = []
    for start, sims in _blocks(x):
        for r, c in zip(*np.nonzero(sims >= bar)):
            a = start + int(r)
            if a < c:
                pairs.append(Pair(a, int(c), float(min(sims[r, c], 1.0)), bool(splits[a] != splits[c]),
                                  bool(labels[a] != labels[c])))
    pairs.sort(key=lambda p: (not (p.cross_split or p.cross_class), -p.similarity, p.a, p.b))
    return pairs


# Calibration: a reliability diagram and the expected calibration error (ECE) over
# equal-width confidence bins (Guo et al. 2017).
BINS = 10


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """``{"ece", "images", "bins": [{"lower", "upper", "count", "confidence", "accuracy"}]}``;
    ECE is the bins' |accuracy - mean confidence|, weighted by each bin's share of images."""
    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    n = len(labels)
    confidence = probabilities.max(axis=1) if n else np.zeros(0)
    correct = (probabilities.argmax(axis=1) == labels) if n else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; the first also holds exactly 0.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    out, ece = [], 0.0
    for i in range(bins):
        inside = which == i
        count = int(inside.sum())
        conf = float(confidence[inside].mean()) if count else None
        acc = float(correct[inside].mean()) if count else None
        if conf is not None and acc is not None:
            ece += count / n * abs(acc - conf)
        out.append({"lower": float(edges[i]), "upper": float(edges[i + 1]), "count": count,
                    "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "images": n, "bins": out}
