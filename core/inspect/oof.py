"""Out-of-fold probabilities: every image scored by a head that never saw it.

Label-error ranking needs probabilities from a model that did not train on the image (a
head trained on an image with a wrong label learns that label). The images are split into
``k`` stratified folds; for each fold a fresh head, built by the run's own head plugin with
the run's settings (dropout, hidden units, learning rate, epochs, batch size, class
weights, feature scaling), trains on the other folds' cached features and scores the
held-out fold.

The training loop is one traced TensorFlow function over every step of every epoch, reused
for all folds (weights and optimizer state are reset between folds), using the head's own
layers, Keras' Adam and Keras' loss. ``keras.Model.fit`` does the same work with a per-step
cost that dominates on features this small (flowers5, 1600 images x 20 epochs: 4.5 s per
head with ``fit``, 2.0 s with this loop, on a shared 2-core machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from clf.errors import DataError

DEFAULT_FOLDS = 5


@dataclass
class OutOfFold:
    probabilities: np.ndarray  # [n, classes], row i from the head that did not train on image i
    fold: np.ndarray  # [n] the fold each image was held out in
    folds: int


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
