"""Out-of-fold probabilities: every image scored by a head that never saw it.

Label-error ranking needs probabilities from a model that did not train on the image (a
head trained on an image with a wrong label learns that label). The images are split into
``k`` stratified folds; for each fold a fresh head trains on the other folds' cached
features and scores the held-out fold.

The default head (a softmax layer on the features, no hidden layer) is a multinomial
logistic regression: a convex problem, so each fold's head is *solved* (scikit-learn's
L-BFGS, to a tolerance that fixes the ranking) rather than trained, on the features scaled
as the run scales them (divided by one RMS) and centred. Its L2 strength is the one the run
chose when the run solved its head, else the one with the lowest out-of-fold log loss,
found by the run's solver's search over strengths half a decade apart (each strength's
folds start from the previous strength's solutions).
Solved heads do not depend on a seed, an epoch count or a batch order, and rank planted
flips about as well as Adam-trained ones in less time (see benchmarks/label_noise.py).

Other heads (a hidden layer, a plugin's head) train with the run's own settings (dropout,
hidden units, learning rate, epochs, batch size, class weights, feature scaling) in one
traced TensorFlow function over every step of every epoch, reused for all folds (weights
and optimizer state reset between folds), using the head's own layers, Keras' Adam and
Keras' loss. ``keras.Model.fit`` does the same work with a per-step cost that dominates on
features this small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from clf.errors import DataError

DEFAULT_FOLDS = 5
# Gradient tolerance of each fold's L-BFGS: scikit-learn's default, 1e-4, ranked planted
# flips no better and took longer (see benchmarks/label_noise.py).
SOLVER_TOL = 1e-3


@dataclass
class OutOfFold:
    probabilities: np.ndarray  # [n, classes], row i from the head that did not train on image i
    fold: np.ndarray  # [n] the fold each image was held out in
    folds: int
    method: str = "keras"  # "solved": convex solver; "keras": the head trained with Adam
    l2: float | None = None  # the solved heads' L2 strength
    log_loss: dict[float, float] | None = None  # L2 strength -> out-of-fold log loss (search)


def fold_count(labels: np.ndarray, class_names: Sequence[str], wanted: int) -> int:
    """``wanted`` folds, fewer when a class has fewer images (each fold holds every class)."""
    counts = np.bincount(labels, minlength=len(class_names))
    smallest = int(counts.min())
    if smallest < 2:
        name = class_names[int(counts.argmin())]
        raise DataError(
            f"Class {name!r} has {smallest} image(s) in training and validation together; "
            f"out-of-fold scoring needs at least 2 per class. Add images to that class."
        )
    if wanted < 2:
        raise DataError(f"Invalid number of folds {wanted}: expected at least 2. Pass --folds 2 or more.")
    return min(wanted, smallest)


def class_weight_vector(policy: str, labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Per-class loss weights as the run chose them (``auto``, ``balanced`` or ``none``)."""
    from clf.train.class_weights import choose_class_weights

    counts = np.bincount(labels, minlength=len(class_names)).tolist()
    weights, _ = choose_class_weights(policy, counts, list(class_names))
    return np.array([float((weights or {}).get(i, 1.0)) for i in range(len(class_names))], np.float32)


def out_of_fold(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, head,
                head_options: dict[str, Any], lr: float, epochs: int, batch_size: int,
                class_weight: str = "auto", seed: int = 42, folds: int = DEFAULT_FOLDS) -> OutOfFold:
    """Probabilities for every row of ``features``, each from a head trained without it."""
    import keras
    import tensorflow as tf
    from sklearn.model_selection import StratifiedKFold

    from clf.train.features import make_standardizer
    from clf.train.forward import predict
    from clf.train.model import build_head

    features = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int32)
    k = fold_count(labels, class_names, folds)
    split = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(features, labels))

    keras.utils.set_random_seed(seed)
    model = build_head(head, features.shape[1], len(class_names), head_options,
                       standardize=make_standardizer(features[split[0][0]]))
    scale = model.get_layer("standardize").std
    optimizer = keras.optimizers.Adam(lr)
    optimizer.build(model.trainable_variables)
    fresh = [np.array(v.numpy()) for v in model.weights]
    fresh_optimizer = [np.array(v.numpy()) for v in optimizer.variables]
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    bs = int(batch_size)

    @tf.function(input_signature=[tf.TensorSpec([None, features.shape[1]], tf.float32),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32),
                                  tf.TensorSpec([None, None], tf.int32)])
    def train(x, y, w, order):
        n = tf.shape(order)[1]
        steps = (n + bs - 1) // bs

        def step(i):
            e, s = i // steps, i % steps
            idx = order[e, s * bs:tf.minimum((s + 1) * bs, n)]
            yb = tf.gather(y, idx)
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(tf.gather(x, idx), training=True), sample_weight=tf.gather(w, yb))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(order)[0] * steps, step, (tf.constant(0),))

    probabilities = np.zeros((len(labels), len(class_names)), np.float32)
    fold = np.zeros(len(labels), np.int32)
    rng = np.random.default_rng(seed)
    for f, (fit_rows, held_out) in enumerate(split):
        for v, value in zip(model.weights, fresh):
            v.assign(value)
        for v, value in zip(optimizer.variables, fresh_optimizer):
            v.assign(value)
        x, y = features[fit_rows], labels[fit_rows]
        # The run scales features by their RMS on its training images; each fold by its own.
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        scale.assign(np.full(scale.shape, rms if rms > 0 else 1.0, np.float32))
        weights = class_weight_vector(class_weight, y, class_names)
        order = np.stack([rng.permutation(len(y)) for _ in range(int(epochs))]).astype(np.int32)
        train(x, y, weights, order)
        probabilities[held_out] = predict(model, features[held_out])
        fold[held_out] = f
    return OutOfFold(probabilities, fold, k)


def solved_out_of_fold(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
                       class_weight: str = "auto", seed: int = 42, folds: int = DEFAULT_FOLDS,
                       l2: float | None = None) -> OutOfFold:
    """Probabilities for every row of ``features`` from L2-regularised multinomial logistic
    regressions, each solved without the row's fold. ``l2``: the strength (penalty l2/2 |W|^2
    on the mean loss); None: the one with the lowest out-of-fold log loss (the run's own
    solver's search, clf.train.linear_head.search)."""
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    from clf.train.linear_head import search

    # float32: scikit-learn keeps it, and the products bound by memory traffic run several
    # times faster than in float64, with the same log losses to 4 digits and the same ranking.
    x = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int64)
    k = fold_count(labels, class_names, folds)
    split = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, labels))
    problems = [_FoldProblem(x, labels, fit_rows, held_out, class_weight, class_names)
                for fit_rows, held_out in split]
    fold = np.zeros(len(labels), np.int32)
    for f, (_, held_out) in enumerate(split):
        fold[held_out] = f
    # One BLAS thread: the products are small, and threads waiting for a busy core cost
    # more than they bring (as in the run's own solver).
    with threadpool_limits(limits=1, user_api="blas"):
        if l2 is not None:
            return OutOfFold(_solve_all(problems, len(labels), len(class_names), l2), fold, k, "solved", float(l2))
        results: dict[float, np.ndarray] = {}

        def held_out_loss(strength: float) -> float:
            results[strength] = _solve_all(problems, len(labels), len(class_names), strength)
            p = np.clip(results[strength][np.arange(len(labels)), labels], 1e-12, 1.0)
            return float(-np.mean(np.log(p)))

        # The run's own solver's walk over L2 strengths half a decade apart.
        scores = search(held_out_loss)
    best = min(scores, key=scores.get)
    return OutOfFold(results[best], fold, k, "solved", best, dict(sorted(scores.items())))


class _FoldProblem:
    """One fold: its rows scaled as the run's head scales features (divided by their RMS on
    the fitting rows, so an L2 strength means what it means to the run's solver) and centred
    (the unpenalised intercept absorbs the mean; the solver converges faster), its held-out
    rows, and a model that starts each fit from the last one."""

    def __init__(self, x, labels, fit_rows, held_out, class_weight, class_names):
        from sklearn.linear_model import LogisticRegression

        fit = x[fit_rows]
        mean = fit.mean(axis=0)
        rms = float(np.sqrt(np.mean(np.square(fit))))
        scale = rms if rms > 0 else 1.0
        self.x, self.held_x = (fit - mean) / scale, (x[held_out] - mean) / scale
        self.y, self.held_out = labels[fit_rows], held_out
        self.weights = class_weight_vector(class_weight, self.y, class_names)[self.y]
        self.model = LogisticRegression(tol=SOLVER_TOL, max_iter=2000, warm_start=True)

    def probabilities(self, l2: float, num_classes: int) -> np.ndarray:
        # scikit-learn minimises C * sum(w_i loss_i) + |W|^2 / 2, i.e. l2 on the mean loss.
        self.model.C = 1.0 / (l2 * float(self.weights.sum()))
        self.model.fit(self.x, self.y, sample_weight=self.weights)
        out = np.zeros((len(self.held_out), num_classes))
        out[:, self.model.classes_] = self.model.predict_proba(self.held_x)
        return out


def _solve_all(problems, n: int, num_classes: int, l2: float) -> np.ndarray:
    probabilities = np.zeros((n, num_classes), np.float32)
    for problem in problems:
        probabilities[problem.held_out] = problem.probabilities(l2, num_classes)
    return probabilities
