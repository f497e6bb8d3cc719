"""Backbone preprocessing as a saved Keras layer, so serving cannot skew from training.
Its config names the mode, not the function, so ``.keras`` and ``.h5`` models reload once
``clf`` is imported.
"""

from __future__ import annotations

import keras
from typing import Any

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


# registers FitPhoto, which exported models start with, for whoever reloads through this module
from clf.data import fitting as _fitting  # noqa: E402,F401
