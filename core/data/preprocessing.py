"""Backbone preprocessing as a saved Keras layer, so serving cannot skew from training, and
clf's other layers that travel inside exported models (Standardize, Mirror, KnownScore).
Their configs name modes and kinds, not functions, so ``.keras`` and ``.h5`` models reload once
``clf`` is imported.
"""

from __future__ import annotations

import keras
from typing import Any

from clf.config import UNKNOWN_SCORES
# the mode registry lives in a Keras-free module, so registering backbones never imports Keras
from clf.data.modes import get_preprocess, preprocess_modes, register_preprocess  # noqa: F401


class _SameShape(keras.layers.Layer):
    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="clf")
class Preprocess(_SameShape):
    """Applies a named preprocessing mode to raw RGB 0-255 images."""

    def __init__(self, mode: str, **kwargs: Any) -> None:
        # float32 so mixed precision does not degrade the mean subtraction
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        get_preprocess(mode)  # fail at build time, not at the first batch
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        return get_preprocess(self.mode)(keras.ops.cast(inputs, "float32"))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="clf")
class Standardize(_SameShape):
    """``(features - mean) / std`` with the statistics as non-trainable weights. Not Keras'
    ``Normalization``: its legacy HDF5 reload silently resets to mean 0, variance 1."""

    def build(self, input_shape: Any) -> None:
        width = int(input_shape[-1])
        self.mean = self.add_weight(name="mean", shape=(width,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(width,), initializer="ones", trainable=False)

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, self.compute_dtype)
        return (x - keras.ops.cast(self.mean, x.dtype)) / keras.ops.cast(self.std, x.dtype)


@keras.saving.register_keras_serializable(package="clf")
class Mirror(_SameShape):
    """Images mirrored left to right: ``--tta flip``'s second view, saved in every export format."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.flip(inputs, axis=2)




@keras.saving.register_keras_serializable(package="clf")
class KnownScore(keras.layers.Layer):
    """How much pooled features look like the training images': ``sigmoid((score - threshold) / scale)``
    as one column, 0.5 exactly at the threshold calibrated on the training images
    (clf.train.unknown), so a client needs no clf to decide. ``kind``'s score, on ``z = (x - center) / spread``
    (the head's standardisation):

    - ``vim``: the linear head's energy ``logsumexp(z W + b)`` minus ``alpha`` times the norm of
      ``z - origin`` off the training features' top ``dim`` principal axes (Wang et al., CVPR 2022);
    - ``energy``, ``max-softmax``: from the head's logits alone;
    - ``maha``: minus the smallest squared Mahalanobis distance to a class mean under one shared
      Ledoit-Wolf covariance: ``precision`` on the sample's ``dim`` principal ``axes``, ``alpha`` off
      them. Both parts are sums of squares (no d x d matrix, no cancellation in float32 or int8).

    Statistics are non-trainable weights, so every export format carries them."""

    def __init__(self, kind: str, classes: int, dim: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")  # thresholds are calibrated in float32
        super().__init__(**kwargs)
        if kind not in UNKNOWN_SCORES:
            raise ValueError(f"Unknown known-score kind {kind!r}; expected one of {', '.join(UNKNOWN_SCORES)}.")
        self.kind, self.classes, self.dim = kind, int(classes), int(dim)

    def build(self, input_shape: Any) -> None:
        d, k = int(input_shape[-1]), self.classes

        def weight(name: str, shape: tuple[int, ...]) -> Any:
            return self.add_weight(name=name, shape=shape, initializer="zeros", trainable=False)

        self.center, self.spread = weight("center", (d,)), weight("spread", (d,))
        if self.kind == "maha":
            self.means, self.precision = weight("means", (k, d)), weight("precision", (self.dim,))
        else:
            self.kernel, self.bias = weight("kernel", (d, k)), weight("bias", (k,))
        if self.kind in ("vim", "maha"):
            self.axes = weight("axes", (d, self.dim))
        self.origin = weight("origin", (d,)) if self.kind == "vim" else None
        # alpha (vim: residual weight; maha: 1 / covariance floor), threshold, scale
        self.calibration = weight("calibration", (3,))

    def score(self, features: Any) -> Any:
        """The raw score per row (higher: more like the training images)."""
        ops = keras.ops
        z = (ops.cast(features, "float32") - self.center) / self.spread
        alpha = self.calibration[0]
        if self.kind == "maha":
            q = ops.expand_dims(z, 1) - self.means  # [n, classes, d]
            projected = ops.matmul(q, self.axes)
            off = q - ops.matmul(projected, ops.transpose(self.axes))
            distance = ops.sum(projected * projected * self.precision, axis=-1) + alpha * ops.sum(off * off, axis=-1)
            return -ops.min(distance, axis=-1)
        logits = ops.matmul(z, self.kernel) + self.bias
        if self.kind == "max-softmax":
            return ops.max(ops.softmax(logits, axis=-1), axis=-1)
        energy = ops.logsumexp(logits, axis=-1)
        if self.kind == "energy":
            return energy
        centred = z - self.origin
        # |residual|^2 = |centred|^2 - |centred axes|^2 (orthonormal axes): no [n, d] product back
        # through the axes, whose rounding depends on the batch size in a traced graph.
        projected = ops.matmul(centred, self.axes)
        squared = ops.sum(centred * centred, axis=-1) - ops.sum(projected * projected, axis=-1)
        return energy - alpha * ops.sqrt(ops.maximum(squared, 0.0))

    def call(self, features: Any) -> Any:
        ops = keras.ops
        scaled = (self.score(features) - self.calibration[1]) / self.calibration[2]
        # sigmoid(s) as softmax([s, 0])[0]: TensorFlow's CPU sigmoid rounds a batch's last rows
        # differently, so a photo's score would depend on the batch it came in (clf predict --shard).
        return ops.softmax(ops.stack([scaled, ops.zeros_like(scaled)], axis=-1), axis=-1)[:, :1]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind, "classes": self.classes, "dim": self.dim}


# registers FitPhoto, which exported models start with, for whoever reloads through this module
from clf.data import fitting as _fitting  # noqa: E402,F401
