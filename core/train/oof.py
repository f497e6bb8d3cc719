"""Out-of-fold probabilities: every image scored by a head that never saw it, since a head
trained on a mislabelled image learns that label (which label-error ranking must not see).
Each fold's head is fitted as the run fitted its own: solved (clf.train.linear_head) or
through Keras (clf.train.fit), keeping its last epoch (a fold has no validation split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from clf.errors import DataError
from clf.train.linear_head import stratified_folds
from clf.train.class_weights import choose_class_weights
from clf import RunConfig
from clf.train.distribute import distribution, precision_scope
from clf.train.features import make_standardizer
from clf.infer.forward import predict

DEFAULT_FOLDS = 5


@dataclass
class OutOfFold:
    probabilities: np.ndarray  # [n, classes], row i from the head that did not train on image i
    fold: np.ndarray  # [n] the fold each image was held out in
    folds: int
    method: str = "keras"  # "solved": the run's linear solver; "keras": the run's Keras fit
    l2: float | None = None  # the solved heads' L2 strength
    log_loss: dict[float, float] | None = None  # L2 strength -> out-of-fold log loss (search)


def assign_folds(labels: np.ndarray, class_names: Sequence[str], folds: int, seed: int) -> tuple[np.ndarray, int]:
    """``(fold per row, fold count)``: the run's stratified folds, seeded by ``seed``; fewer than
    ``folds`` when a class has fewer images (each fold holds every class)."""
    counts = np.bincount(labels, minlength=len(class_names))
    smallest = int(counts.min())
    if smallest < 2:
        name = class_names[int(counts.argmin())]
        raise DataError(
            f"Class {name!r} has {smallest} image(s) in training and validation together; "
            f"out-of-fold scoring needs at least 2 per class. Add images to that class."
        )
    if folds < 2:
        raise DataError(f"Invalid number of folds {folds}: expected at least 2. Pass --folds 2 or more.")
    k = min(folds, smallest)
    return stratified_folds(labels, k, seed).astype(np.int32), k


def fold_class_weight(policy: str, labels: np.ndarray, class_names: Sequence[str]) -> dict[int, float] | None:
    """The class weights ``policy`` (auto, balanced, none) gives for these training labels."""
    counts = np.bincount(labels, minlength=len(class_names)).tolist()
    weights, _ = choose_class_weights(policy, counts, list(class_names))
    return weights


def out_of_fold(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, head: Any,
                config: RunConfig, folds: int = DEFAULT_FOLDS) -> OutOfFold:
    """Probabilities for every row of ``features``, each from a head fitted without it by the
    run's Keras route with ``config``'s settings (head options, lr, epochs, class weights...)."""
    import keras
    import tensorflow as tf

    from clf.train.fit import augmented, compile_for, quiet_fit, training_batches
    from clf.train.model import build_head

    features = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int32)
    fold, k = assign_folds(labels, class_names, folds, config.seed)
    head_options = {"dropout": config.dropout, "hidden_units": config.hidden_units}
    # One device in full precision: the head is small, and inspect runs wherever it is called.
    dist = distribution("default", "float32", config.batch_size)
    probabilities = np.zeros((len(labels), len(class_names)), np.float32)
    for f in range(k):
        x, y = features[fold != f], labels[fold != f]
        keras.utils.set_random_seed(config.seed)  # each fold's head starts as the run's did
        with dist.strategy.scope(), precision_scope(dist.precision):
            model = build_head(head, features.shape[1], len(class_names), head_options,
                               standardize=make_standardizer(x))
        batches, steps = training_batches(tf.data.Dataset.from_tensor_slices((x, y)), len(y), seed=config.seed,
                                          batch_size=config.batch_size, first_epoch=0, epochs=config.epochs,
                                          dist=dist)
        compile_for(model, config.lr, dist, config, steps * config.epochs)
        weights = fold_class_weight(config.class_weight, y, class_names)
        quiet_fit(model, augmented(batches, config, live_images=False), epochs=config.epochs,
                  steps_per_epoch=steps, class_weight=weights)
        probabilities[fold == f] = predict(model, features[fold == f])
    return OutOfFold(probabilities, fold, k)


def solved_out_of_fold(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
                       class_weight: str = "auto", seed: int = 42, folds: int = DEFAULT_FOLDS,
                       l2: float | None = None, tight: bool = True) -> OutOfFold:
    """Probabilities for every row of ``features`` from the run's linear solver, each fold's
    head solved without the fold. ``l2``: the strength (penalty l2/2 |W|^2 on the mean loss);
    None: the one the run's search picks, by the folds' held-out log loss. ``tight``: as
    ``linear_head.held_out``'s."""
    from clf.train import linear_head

    features = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int64)
    fold, k = assign_folds(labels, class_names, folds, seed)
    problems = []
    for f in range(k):
        fit, held = fold != f, fold == f
        # The fold's rows as its head would see them: scaled by their own RMS, as the run's are.
        standardize = make_standardizer(features[fit])
        problems.append(linear_head.HeldOutRows(
            linear_head.head_inputs(standardize, features[fit]), labels[fit],
            linear_head.head_inputs(standardize, features[held]), labels[held],
            fold_class_weight(class_weight, labels[fit], class_names)))
    # Not tight (--folds): one basis from every row serves all folds (linear_head.held_out's span).
    result = linear_head.held_out(problems, len(class_names), l2, tight=tight, span=None if tight else features)
    probabilities = np.zeros((len(labels), len(class_names)), np.float32)
    for f, p in enumerate(result.probabilities):
        probabilities[fold == f] = p
    return OutOfFold(probabilities, fold, k, "solved", result.l2,
                     dict(sorted(result.cv_log_loss.items())) if l2 is None else None)
