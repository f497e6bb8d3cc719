"""Near-duplicate images: pairs whose features are far closer than any two photos usually are.

A resized, re-encoded or lightly cropped copy has other bytes (the doctor finds only identical
files) but nearly the same features; it matters across splits (it inflates validation scores)
or classes (one photo, two labels). Closeness depends on the backbone, so the bar is relative:
a pair counts when its cosine distance is at most ``RATIO`` times the median nearest-neighbour
distance. On real photos with a pretrained backbone, ``RATIO`` puts re-encoded and lightly
cropped copies well under the bar and distinct photos well over it. A strongly shrunk copy is
framed differently by the centre crop (never below the input size), so only some are caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

RATIO = 0.4
CHUNK = 1024  # rows of the similarity matrix held at once (memory: CHUNK x n floats)


@dataclass
class Pair:
    a: int
    b: int
    similarity: float  # cosine similarity of the two images' features
    cross_split: bool
    cross_class: bool


def _unit(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _blocks(x: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, similarities of CHUNK rows to every row, self-similarity removed)``."""
    for start in range(0, len(x), CHUNK):
        sims = x[start:start + CHUNK] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        yield start, sims


def near_duplicates(features: np.ndarray, labels: np.ndarray, splits: np.ndarray,
                    ratio: float = RATIO) -> list[Pair]:
    """Pairs ``a < b`` close enough to be copies: leaks and cross-class pairs first, then closest."""
    x = _unit(features)
    if len(x) < 3:
        return []
    nearest = np.concatenate([sims.max(axis=1) for _, sims in _blocks(x)])
    bar = 1.0 - ratio * float(np.median(1.0 - nearest))
    pairs = []
    for start, sims in _blocks(x):
        for r, c in zip(*np.nonzero(sims >= bar)):
            a = start + int(r)
            if a < c:
                pairs.append(Pair(a, int(c), float(min(sims[r, c], 1.0)), bool(splits[a] != splits[c]),
                                  bool(labels[a] != labels[c])))
    pairs.sort(key=lambda p: (not (p.cross_split or p.cross_class), -p.similarity, p.a, p.b))
    return pairs
