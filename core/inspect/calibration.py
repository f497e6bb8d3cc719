"""How far the model's confidence is from its accuracy: a reliability diagram and the
expected calibration error (ECE) over equal-width confidence bins (Guo et al. 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

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
        conf: float | None = None
        acc: float | None = None
        if count:
            conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
            ece += count / n * abs(acc - conf)
        out.append({"lower": float(edges[i]), "upper": float(edges[i + 1]), "count": count,
                    "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "images": n, "bins": out}
