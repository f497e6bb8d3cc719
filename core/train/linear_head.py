"""The default head, solved rather than trained: multinomial logistic regression on the
cached features (multi-label data: one-vs-rest logistic regression, a sigmoid a class, with
per-class decision thresholds maximising F1 out of fold: ``f1_thresholds``) (full-batch L-BFGS), so the result depends on the features alone, not on the
seed, batch order or stopping point; the L2 strength by stratified k-fold cross-validation
(held-out log loss), as linear-probe evaluations pick it. The solution is written into the
head's own Dense layer. Kept fast by centring (the bias is unpenalised), a diagonal
preconditioner and, with fewer images than features, solving in the images' span.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

FOLDS = 5
# L2 strengths tried by half decades from START_L2 (see search), within 10**-LIMITS[0] ..
# 10**LIMITS[1] times START_L2; the start is where real features usually land.
START_L2 = 0.1
LIMITS = (3, 3)
DEFAULT_L2 = 1e-1  # when there are too few images per class to cross-validate
FOLD_SEED = 0  # the folds never depend on --seed: the same features give the same head
GTOL = 1e-6  # L-BFGS stops when every gradient entry is below this (loss is a mean)
CV_GTOL = 1e-4  # enough to compare held-out losses between strengths
MAX_ITER = 2000


@dataclass
class LinearSolution:
    kernel: np.ndarray  # [features, classes] on the head's standardized input
    bias: np.ndarray  # [classes]
    l2: float  # the chosen L2 strength (penalty l2/2 * |kernel|^2 on the mean loss)
    folds: int  # cross-validation folds (0: too few images per class to cross-validate)
    cv_log_loss: dict[float, float] = field(default_factory=dict)  # strength -> held-out log loss
    iterations: int = 0  # L-BFGS iterations, every fit included
    converged: bool = True
    seconds: float = 0.0
    # Multi-label: each class's decision threshold on its sigmoid score (F1-best out of fold).
    thresholds: np.ndarray | None = None

    def record(self) -> dict[str, Any]:
        """What the run record says about the head's training."""
        extra = {} if self.thresholds is None else {
            "thresholds": [round(float(t), 6) for t in self.thresholds],
            "threshold_selection": (f"per class, the F1-best cut of the out-of-fold scores ({self.folds} folds)"
                                    if self.folds else "0.5 (too few images per label to cross-validate)")}
        return {
            "solver": "lbfgs",
            "model": ("one-vs-rest logistic regression (sigmoid per class) on the cached features"
                      if self.thresholds is not None else "multinomial logistic regression on the cached features"),
            "l2": self.l2,
            "C": 1.0 / self.l2,  # scikit-learn's convention, for anyone comparing
            "selection": (f"stratified {self.folds}-fold cross-validation on the training features "
                          f"(held-out log loss)" if self.folds else "default (too few images per class "
                                                                      "to cross-validate)"),
            "cv_log_loss": {f"{k:.3g}": round(v, 6) for k, v in sorted(self.cv_log_loss.items(), reverse=True)},
            "iterations": self.iterations,
            "converged": self.converged,
            "seconds": round(self.seconds, 3),
            **extra,
        }

    def describe(self) -> str:
        how = f"chosen by {self.folds}-fold cross-validation" if self.folds else "default: too few images to cross-validate"
        return f"linear head solved (L-BFGS, L2 {self.l2:.3g}, {how}) in {self.seconds:.2f}s"


def linear_layers(head_model: Any) -> tuple[Any, Any] | None:
    """``(standardize layer or None, Dense softmax layer)`` when ``head_model`` is a linear
    softmax, or sigmoid for multi-label (optional Standardize and Dropout, then Dense; Dropout is
    the identity at inference); else None."""
    import keras

    from clf.data.preprocessing import Standardize

    standardize, dense = None, None
    for layer in head_model.layers:
        if isinstance(layer, keras.layers.InputLayer) or isinstance(layer, keras.layers.Dropout):
            continue
        if isinstance(layer, Standardize) and standardize is None and dense is None:
            standardize = layer
        elif isinstance(layer, keras.layers.Dense) and dense is None:
            dense = layer
        else:
            return None
    if dense is None or getattr(dense.activation, "__name__", "") not in ("softmax", "sigmoid"):
        return None
    return standardize, dense


def head_inputs(standardize: Any, features: np.ndarray) -> np.ndarray:
    """The features as the Dense layer sees them (after the Standardize layer), float64."""
    x = np.asarray(features, np.float64)
    if standardize is None:
        return x
    mean = np.asarray(standardize.mean.numpy(), np.float64)
    std = np.asarray(standardize.std.numpy(), np.float64)
    return (x - mean) / std


def write(dense: Any, solution: LinearSolution) -> None:
    dense.kernel.assign(solution.kernel.astype(np.float32))
    dense.bias.assign(solution.bias.astype(np.float32))


class _Problem:
    """Mean weighted softmax cross-entropy + l2/2 |W|^2 on centred rows in the principal
    basis. ``dtype``: of the rows (float32 halves the memory traffic that bounds each step;
    the loss and optimizer state stay float64)."""

    def __init__(self, z: np.ndarray, labels: np.ndarray, weights: np.ndarray, num_classes: int,
                 curvature: np.ndarray, dtype: type[np.floating[Any]] = np.float64) -> None:
        self.z, self.n_classes, self.curvature, self.dtype = z.astype(dtype), num_classes, curvature, dtype
        # Multi-label: labels [n, k] 0/1 and weights [n, k]; the loss is each class's mean binary
        # cross-entropy, summed over the classes (one-vs-rest, one shared L2 strength).
        self.multilabel = labels.ndim == 2
        self.onehot = np.asarray(labels, np.float64) if self.multilabel else np.eye(num_classes)[labels]
        self.w = weights / (len(weights) if self.multilabel else weights.sum())

    def solve(self, l2: float, start: tuple[np.ndarray, np.ndarray] | None,
              gtol: float = GTOL) -> tuple[tuple[np.ndarray, np.ndarray], int, bool]:
        from scipy.optimize import minimize
        from scipy.special import expit

        r, k = self.z.shape[1], self.n_classes
        # W = q * U, q = 1/sqrt(axis curvature: variance / 4 + l2), so every axis of U is about as steep.
        q = 1.0 / np.sqrt(0.25 * self.curvature + l2)
        zq = self.z * q.astype(self.dtype)

        def loss_and_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
            u, b = p[:r * k].reshape(r, k), p[r * k:]
            logits = (zq @ u.astype(self.dtype)).astype(np.float64) + b
            qu = q[:, None] * u
            if self.multilabel:
                loss = np.sum(self.w * (np.logaddexp(0.0, logits) - self.onehot * logits)) + 0.5 * l2 * np.sum(qu * qu)
                g = (expit(logits) - self.onehot) * self.w
            else:
                logits -= logits.max(axis=1, keepdims=True)
                e = np.exp(logits)
                total = e.sum(axis=1)
                loss = np.dot(self.w, np.log(total) - (logits * self.onehot).sum(axis=1)) + 0.5 * l2 * np.sum(qu * qu)
                g = (e / total[:, None] - self.onehot) * self.w[:, None]
            grad_u = (zq.T @ g.astype(self.dtype)).astype(np.float64) + l2 * q[:, None] * qu
            return loss, np.concatenate([grad_u.ravel(), g.sum(axis=0)])

        x0 = (np.zeros(r * k + k) if start is None
              else np.concatenate([(start[0] / q[:, None]).ravel(), start[1]]))
        result = minimize(loss_and_grad, x0, jac=True, method="L-BFGS-B",
                          options={"maxiter": MAX_ITER, "gtol": gtol, "ftol": 1e-12})
        u = result.x[:r * k].reshape(r, k)
        return (q[:, None] * u, result.x[r * k:]), int(result.nit), bool(result.success)


def _log_loss(coef: tuple[np.ndarray, np.ndarray], z: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean held-out cross-entropy of the solution ``coef`` on rows ``z`` (multi-label:
    binary cross-entropy summed over the classes)."""
    logits = z @ coef[0] + coef[1]
    if y.ndim == 2:
        return float(np.sum(weights * (np.logaddexp(0.0, logits) - y * logits)) / len(y))
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits[np.arange(len(y)), y] - np.log(np.exp(logits).sum(axis=1))
    return float(-np.dot(weights, log_p) / weights.sum())


def stratified_folds(labels: np.ndarray, folds: int, seed: int = FOLD_SEED) -> np.ndarray:
    """Fold index per row: each class's rows shuffled (seeded) and dealt round the folds."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), np.int64)
    start = 0
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        out[rows] = (np.arange(len(rows)) + start) % folds  # continue where the last class ended
        start += len(rows)
    return out


def search(held_out_loss: Callable[[float], float]) -> tuple[float, dict[float, float]]:
    """``(best strength, {strength: held-out loss})`` at L2 strengths half a decade apart, from
    START_L2 downhill until it rises (the loss is smooth in the strength); the stronger side
    first, as it solves fastest."""
    scores: dict[float, float] = {}

    def at(e: int) -> float:
        if strength(e) not in scores:
            scores[strength(e)] = held_out_loss(strength(e))
        return scores[strength(e)]

    best = 0
    for direction in (1, -1):  # stronger, then weaker
        while -2 * LIMITS[0] <= best + direction <= 2 * LIMITS[1] and at(best + direction) < at(best):
            best += direction
        if len(scores) > 2 or best != 0:
            break  # moved (or both neighbours were tried): the minimum is found
    return min(scores, key=scores.__getitem__), scores


def strength(half_decades: int) -> float:
    """The L2 strength ``START_L2 * 10**(half_decades / 2)``, rounded (exact grid keys)."""
    return float(f"{START_L2 * 10.0 ** (half_decades / 2):.6g}")


def solve(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
          class_weight: dict[int, float] | np.ndarray | None = None,
          n_clean: int | None = None) -> LinearSolution:
    """The L2-regularised multinomial logistic regression of ``labels`` on ``features``, its
    strength chosen by stratified ``FOLDS``-fold cross-validation. ``n_clean``: the first rows
    are the images, the rest augmented copies (row i is image i % n_clean), held out with their
    image and never scored; ``class_weight`` weights each row by its class. BLAS runs on one
    thread: the products are small and memory-bound, and waiting threads slow it badly.

    Multi-label: ``labels`` is ``[n, classes]`` 0/1, the model one-vs-rest logistic regression
    (folds stratified by label set), ``class_weight`` a ``[2, classes]`` array (each label's
    negative and positive weight: ``clf.train.class_weights.label_weights``), and the solution
    carries per-class thresholds chosen on the out-of-fold scores at the chosen strength."""
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        rows = _Rows(features, labels, num_classes, class_weight)
        z, y, weights = rows.z, rows.y, rows.weights
        multilabel = y.ndim == 2
        n_clean = len(y) if n_clean is None else n_clean
        counts: Any
        strata: Any
        if multilabel:
            counts = y[:n_clean].sum(axis=0)
            strata = np.unique(y[:n_clean], axis=0, return_inverse=True)[1].reshape(-1)
        else:
            counts = np.bincount(y[:n_clean], minlength=num_classes)
            strata = y[:n_clean]
        k = int(min(FOLDS, counts[counts > 0].min())) if counts.any() else 0
        scores: dict[float, float] = {}
        fold_coefs: dict[float, list[tuple[np.ndarray, np.ndarray]]] = {}
        held: list[tuple[np.ndarray, np.ndarray]] = []
        if k >= 2:
            fold_of = stratified_folds(strata, k)[np.arange(len(y)) % n_clean]
            clean = np.arange(len(y)) < n_clean
            held = [(fold_of != f, (fold_of == f) & clean) for f in range(k)]
            problems = [_Problem(z[tr], y[tr], weights[tr], num_classes, rows.curvature, np.float32)
                        for tr, _ in held]

            def held_out_loss(l2: float) -> float:
                # Start each fold from the full-data solution at this strength: a few steps away.
                fold_coefs[l2] = [rows.coef(sub, l2, rows.rough_at(l2), CV_GTOL) for sub in problems]
                losses = [_log_loss(coef, z[te], y[te], weights[te]) for (_, te), coef in zip(held, fold_coefs[l2])]
                return sum(losses) / k

            l2, scores = search(held_out_loss)
        else:
            l2, k = DEFAULT_L2, 0
        solution = rows.solution(l2, k, scores)  # the chosen strength, solved tightly
        if multilabel:
            solution.thresholds = np.full(num_classes, 0.5)
            if k >= 2:  # each clean row scored by the fold head that did not see it
                from scipy.special import expit

                scored = np.zeros((n_clean, num_classes))
                for (_, te), coef in zip(held, fold_coefs[l2]):
                    scored[np.flatnonzero(te)] = expit(z[te] @ coef[0] + coef[1])
                solution.thresholds = f1_thresholds(y[:n_clean], scored)
    solution.seconds = time.perf_counter() - t0
    return solution


def f1_thresholds(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per class, the cut on ``scores`` that maximises F1 against ``targets`` (0/1 ``[n, classes]``),
    placed midway between the last score kept and the next one (ties: the lowest best cut);
    0.5 for a class without positives."""
    y, p = np.asarray(targets) > 0.5, np.asarray(scores, np.float64)
    out = np.full(y.shape[1], 0.5)
    for c in range(y.shape[1]):
        positives = int(y[:, c].sum())
        if positives == 0:
            continue
        order = np.argsort(-p[:, c], kind="stable")
        s, hit = p[order, c], y[order, c]
        tp = np.cumsum(hit)
        fp = np.cumsum(~hit)
        last = np.r_[s[1:] != s[:-1], True]  # cut only between distinct scores
        f1 = np.where(last, 2 * tp / (2 * tp + fp + (positives - tp)), -1.0)
        i = int(np.argmax(f1))
        out[c] = (s[i] + s[i + 1]) / 2 if i + 1 < len(s) else s[i] / 2
    return out


def _basis(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(basis, variance per axis)``: the principal axes of the centred rows without
    zero-variance directions (an L2 solution lies in the rows' span), giving the
    preconditioner its curvature. From the Gram (n x n) or covariance (d x d), whichever is smaller."""
    n, d = centred.shape
    gram = n < d
    values, vectors = np.linalg.eigh(centred @ centred.T if gram else centred.T @ centred)
    keep = values > max(values.max(initial=0.0), 1e-300) * 1e-12
    basis = centred.T @ (vectors[:, keep] / np.sqrt(values[keep])) if gram else vectors[:, keep]
    return basis, values[keep] / n


# --- the same problem on given rows, scored on others (clf inspect's out-of-fold heads) -----

def solve_at(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float, *,
             class_weight: dict[int, float] | None = None) -> LinearSolution:
    """The head ``solve`` writes, at the given L2 strength instead of a cross-validated one.
    ``features``: the head's inputs (``head_inputs``)."""
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        solution = _Rows(features, labels, num_classes, class_weight).solution(float(l2))
    solution.seconds = time.perf_counter() - t0
    return solution


def softmax_outputs(solution: LinearSolution, inputs: np.ndarray) -> np.ndarray:
    """What the head's Dense layer outputs for head inputs ``inputs`` (float64)."""
    logits = np.asarray(inputs, np.float64) @ solution.kernel + solution.bias
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class HeldOutRows:
    """One fold's fit rows and scored rows, as head inputs scaled as the run would scale them."""

    fit: np.ndarray
    fit_labels: np.ndarray
    held: np.ndarray
    held_labels: np.ndarray
    class_weight: dict[int, float] | None = None  # as the run would choose it for the fit rows


@dataclass
class HeldOutResult:
    probabilities: list[np.ndarray]  # per fold, [held rows, classes]
    l2: float
    cv_log_loss: dict[float, float]  # strength -> held-out log loss (empty: l2 was given)
    iterations: int
    converged: bool


def held_out(folds: list[HeldOutRows], num_classes: int, l2: float | None = None, *,
             tight: bool = True, span: np.ndarray | None = None) -> HeldOutResult:
    """Each fold's held rows scored by ``solve_at``'s solution on its fit rows. ``l2`` None:
    the strength ``solve`` would pick by the same search, each fold warm-starting only from
    its own solutions (never one that saw its held-out rows); then solved tightly, or with
    ``tight=False`` to the cross-validation tolerance (``CV_GTOL``, float32 rows: a few times
    faster; held-out accuracy is the same to well below one image in a thousand). ``span``:
    rows whose span (centred, at any scale) holds every fold's fit rows, e.g. all of them:
    one eigendecomposition serves every fold instead of one each (the solutions are the same:
    an L2 solution has no part outside its rows' span; only the preconditioner differs)."""
    with threadpool_limits(limits=1, user_api="blas"):
        shared = None
        if span is not None:
            x = np.asarray(span, np.float64)
            shared = _basis(x - x.mean(axis=0))[0]
        rows = [_Rows(f.fit, f.fit_labels, num_classes, f.class_weight, shared) for f in folds]
        scores: dict[float, float] = {}
        if l2 is None:
            held = [((np.asarray(f.held, np.float64) - r.mean) @ r.basis, np.asarray(f.held_labels, np.int64),
                     _row_weights(f.held_labels, f.class_weight)) for f, r in zip(folds, rows)]

            def held_out_loss(strength: float) -> float:
                losses = [_log_loss(r.rough_at(strength), *h) for r, h in zip(rows, held)]
                return sum(losses) / len(folds)

            l2, scores = search(held_out_loss)
        probabilities = [softmax_outputs(r.solution(float(l2)) if tight else r.rough_solution(float(l2)), f.held)
                         for r, f in zip(rows, folds)]
    return HeldOutResult(probabilities, float(l2), scores, sum(r.iterations for r in rows),
                         all(r.converged for r in rows))


def _entry_weights(targets: np.ndarray, label_weight: np.ndarray | None) -> np.ndarray:
    """Multi-label: each (row, class) entry's loss weight, the class's negative or positive
    weight (``label_weight[0 | 1, class]``), or 1."""
    if label_weight is None:
        return np.ones_like(targets)
    w = np.asarray(label_weight, np.float64)
    return np.where(targets > 0.5, w[1], w[0])


def _row_weights(labels: np.ndarray, class_weight: dict[int, float] | None) -> np.ndarray:
    """Each row's loss weight: its class's weight, or 1."""
    y = np.asarray(labels, np.int64)
    return (np.asarray([class_weight.get(int(c), 0.0) for c in y], np.float64) if class_weight
            else np.ones(len(y)))


class _Rows:
    """One set of rows, centred in their principal basis, with tight (float64) and rough
    (float32) problems; counts L-BFGS iterations over every fit, and whether each converged."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, num_classes: int,
                 class_weight: dict[int, float] | np.ndarray | None, basis: np.ndarray | None = None) -> None:
        x = np.asarray(features, np.float64)
        multilabel = np.ndim(labels) == 2
        self.y = np.asarray(labels, np.float64 if multilabel else np.int64)
        self.weights = (_entry_weights(self.y, class_weight) if multilabel  # type: ignore[arg-type]
                        else _row_weights(self.y, class_weight))  # type: ignore[arg-type]
        self.mean = x.mean(axis=0)
        if basis is None:
            self.basis, self.curvature = _basis(x - self.mean)
            self.z = (x - self.mean) @ self.basis
        else:  # a given orthonormal basis holding the rows' span (held_out's ``span``)
            self.basis = basis
            self.z = (x - self.mean) @ basis
            self.curvature = np.mean(self.z * self.z, axis=0)
        self.tight = _Problem(self.z, self.y, self.weights, num_classes, self.curvature)
        self.rough = _Problem(self.z, self.y, self.weights, num_classes, self.curvature, np.float32)
        self.path: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # L2 strength -> rough solution
        self.iterations, self.converged = 0, True

    def coef(self, problem: _Problem, l2: float, start: tuple[np.ndarray, np.ndarray] | None,
             gtol: float) -> tuple[np.ndarray, np.ndarray]:
        coef, iterations, ok = problem.solve(l2, start, gtol)
        self.iterations += iterations
        self.converged = self.converged and ok
        return coef

    def rough_at(self, l2: float) -> tuple[np.ndarray, np.ndarray]:
        """The rough solution at ``l2``, warm-started from the nearest strength solved."""
        if l2 not in self.path:
            nearest = min(self.path, key=lambda s: abs(np.log(s / l2)), default=None)
            start = self.path[nearest] if nearest is not None else None
            self.path[l2] = self.coef(self.rough, l2, start, CV_GTOL)
        return self.path[l2]

    def rough_solution(self, l2: float) -> LinearSolution:
        """The rough (``CV_GTOL``) solution at ``l2`` in feature space."""
        coef = self.rough_at(l2)
        kernel = self.basis @ coef[0]
        return LinearSolution(kernel, coef[1] - self.mean @ kernel, float(l2), 0, {}, self.iterations,
                              self.converged)

    def solution(self, l2: float, folds: int = 0,
                 scores: dict[float, float] | None = None) -> LinearSolution:
        """The tight solution at ``l2`` (from the rough one there, if any) in feature space."""
        coef = self.coef(self.tight, l2, self.path.get(l2), GTOL)
        kernel = self.basis @ coef[0]
        bias = coef[1] - self.mean @ kernel  # the centring, folded into the bias
        return LinearSolution(kernel, bias, float(l2), folds, scores or {}, self.iterations,
                              self.converged)
