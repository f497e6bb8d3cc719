"""Which images look wrong: suspected label issues, the worst validation errors, outliers.
Label issues and outliers come from cleanlab (confident learning on out-of-fold
probabilities; kNN distances in feature space) rather than a formula of our own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# cleanlab's default; on planted flips it ranks at least as well as the other methods
# (see benchmarks/label_noise.py).
QUALITY_METHOD = "self_confidence"
# cleanlab Datalab's default outlier fence on kNN distances: Q3 + (1/0.37037 - 1) * IQR.
OUTLIER_IQR_SCALE = 1 / 0.37037 - 1


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
    score: np.ndarray  # [n] cleanlab's typicality in [0, 1]; low: far from its neighbours
    ranking: np.ndarray  # every index, least typical first
    flagged: np.ndarray  # [n] bool: past the fence


def outliers(features: np.ndarray) -> Outliers:
    """Images far from every other image in feature space (their k nearest neighbours)."""
    from cleanlab.outlier import OutOfDistribution

    features = np.asarray(features, np.float32)
    if len(features) < 3:
        return Outliers(np.ones(len(features)), np.arange(len(features)), np.zeros(len(features), bool))
    k = min(10, len(features) - 1)
    score = OutOfDistribution(params={"k": k}).fit_score(features=features, verbose=False)
    # -log turns the score back into a distance-like scale, where Tukey's fence marks the few far out.
    distance = -np.log(np.clip(score, 1e-12, 1.0))
    q1, q3 = np.percentile(distance, [25, 75])
    flagged = distance > q3 + OUTLIER_IQR_SCALE * (q3 - q1)
    return Outliers(score, np.argsort(score, kind="stable"), flagged)
