"""How sure a score is: Student t intervals over fold scores, paired bootstrap intervals and
McNemar's test for two models on the same images. numpy and the standard library only (scipy
is imported for the t quantile alone), so ``clf compare`` never loads TensorFlow."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
# Above this many discordant pairs the exact binomial sum is replaced by the chi-square
# approximation (continuity-corrected), which is then accurate to far below reporting precision.
EXACT_MCNEMAR_UP_TO = 1000


def t_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> dict[str, Any]:
    """Mean of ``values`` (one score per fold) and its two-sided Student t interval
    ``mean -/+ t_{(1+level)/2, k-1} * sd / sqrt(k)`` (sd with k-1 in the denominator); the
    usual interval for a k-fold mean. ``split_low``/``split_high``: the t prediction interval
    of one more held-out split's score, ``mean -/+ t * sd * sqrt(1 + 1/k)``: where a single
    train/validation split's score would land, which is what one run's validation accuracy is.
    Clipped to [0, 1], as every score here is a fraction."""
    from scipy.stats import t

    x = np.asarray(values, np.float64)
    k = len(x)
    mean = float(x.mean()) if k else 0.0
    sd = float(x.std(ddof=1)) if k > 1 else 0.0
    quantile = float(t.ppf((1 + level) / 2, k - 1)) if k > 1 else 0.0
    half, split = quantile * sd / math.sqrt(k) if k else 0.0, quantile * sd * math.sqrt(1 + 1 / k) if k else 0.0
    return {"mean": mean, "low": max(0.0, mean - half), "high": min(1.0, mean + half), "sd": sd,
            "split_low": max(0.0, mean - split), "split_high": min(1.0, mean + split),
            "per_fold": [float(v) for v in x]}


def paired_bootstrap(right_a: np.ndarray, right_b: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                     level: float = LEVEL, seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """Accuracy of B minus accuracy of A on the same images, with the percentile interval of
    that difference over ``resamples`` resamplings of the images (both runs resampled together)."""
    a = np.asarray(right_a, np.float64)
    b = np.asarray(right_b, np.float64)
    n = len(a)
    diff = b - a
    if n == 0:
        return {"difference": 0.0, "low": 0.0, "high": 0.0, "resamples": 0}
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // n)  # resample in blocks: bounded memory on large evaluations
    for start in range(0, resamples, step):
        rows = rng.integers(0, n, size=(min(step, resamples - start), n))
        means[start:start + len(rows)] = diff[rows].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": float(diff.mean()), "low": float(low), "high": float(high), "resamples": resamples}


def mcnemar(right_a: np.ndarray, right_b: np.ndarray) -> dict[str, Any]:
    """Images only A gets right, only B gets right, and McNemar's two-sided p-value on them:
    exact (binomial, p = 1/2) up to ``EXACT_MCNEMAR_UP_TO`` discordant images, else chi-square
    with continuity correction."""
    a = np.asarray(right_a, bool)
    b = np.asarray(right_b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    n = only_a + only_b
    if n == 0:
        p, method = 1.0, "exact binomial"
    elif n <= EXACT_MCNEMAR_UP_TO:
        tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
        p, method = min(1.0, 2 * tail / 2 ** n), "exact binomial"
    else:
        chi2 = (abs(only_a - only_b) - 1) ** 2 / n
        p, method = math.erfc(math.sqrt(chi2 / 2)), "chi-square with continuity correction"
    return {"right_only_a": only_a, "right_only_b": only_b, "p_value": float(p), "method": method}
