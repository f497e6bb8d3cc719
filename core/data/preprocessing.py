"""Backbone preprocessing as a saved Keras layer, so serving cannot skew from training.

The exported model takes raw RGB floats in 0-255; a ``Preprocess`` layer at its input
applies the backbone's own ``preprocess_input`` (e.g. VGG16's BGR mean subtraction, not the
``rescale=1/255`` of many tutorials). The layer's config names the mode, not the function,
so the model reloads in ``.keras`` and ``.h5`` alike once ``clf`` is imported.
"""

from __future__ import annotations

import keras
from typing import Any

# The registry of modes lives in a module without Keras, so registering a backbone (which
# runs on every command, listings included) never imports it; re-exported here.
from clf.data.modes import get_preprocess, preprocess_modes, register_preprocess  # noqa: F401


@keras.saving.register_keras_serializable(package="clf")
class Preprocess(keras.layers.Layer):
    """Applies a named preprocessing mode to raw RGB 0-255 images."""

    def __init__(self, mode: str, **kwargs: Any) -> None:
        # Always float32: under mixed precision the mean subtraction must not lose precision.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        get_preprocess(mode)  # fail at build time, not at the first batch
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        return get_preprocess(self.mode)(keras.ops.cast(inputs, "float32"))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="clf")
class Standardize(keras.layers.Layer):
    """``(features - mean) / std`` with the statistics as (non-trainable) weights.

    Keras' own ``Normalization`` layer keeps derived tensors that its legacy HDF5 loader does
    not refresh (a reloaded ``.h5`` model silently used mean 0, variance 1), so the head uses
    this layer, which reads its weights on every call and round-trips in every format.
    """

    def build(self, input_shape: Any) -> None:
        width = int(input_shape[-1])
        self.mean = self.add_weight(name="mean", shape=(width,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(width,), initializer="ones", trainable=False)

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, self.compute_dtype)
        return (x - keras.ops.cast(self.mean, x.dtype)) / keras.ops.cast(self.std, x.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="clf")
class Mirror(keras.layers.Layer):
    """Images ``[batch, height, width, channels]`` mirrored left to right: the second view of
    ``--tta flip`` (a saved layer, so every exported format mirrors as training did)."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.flip(inputs, axis=2)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


# Exported models start with FitPhoto (the crop and resize): whatever imports this module to
# reload a clf model registers that layer too.
from clf.data import fitting as _fitting  # noqa: E402,F401
