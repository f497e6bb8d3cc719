"""Backbone preprocessing as a saved Keras layer, so serving cannot skew from training.

The exported model takes raw RGB floats in 0-255; a ``Preprocess`` layer at its input
applies the backbone's own ``preprocess_input`` (e.g. VGG16's BGR mean subtraction, not the
``rescale=1/255`` of many tutorials). The layer's config names the mode, not the function,
so the model reloads in ``.keras`` and ``.h5`` alike once ``clf`` is imported.
"""

from __future__ import annotations

from typing import Callable

import keras

from clf.errors import PluginError

_MODES: dict[str, Callable] = {}


def register_preprocess(name: str, fn: Callable) -> None:
    """Make ``fn(x) -> x`` (float tensor, RGB 0-255 in) available as preprocessing ``name``."""
    if name in _MODES and _MODES[name] is not fn:
        raise PluginError(
            f"Preprocessing mode {name!r} is already registered; expected a new name. "
            f"Pick another name for the plugin's preprocessing."
        )
    _MODES[name] = fn


def preprocess_modes() -> list[str]:
    return sorted(_MODES)


def get_preprocess(name: str) -> Callable:
    try:
        return _MODES[name]
    except KeyError:
        raise PluginError(
            f"Unknown preprocessing mode {name!r}. Available: {', '.join(preprocess_modes())}. "
            f"Import the plugin that registers it before loading the model."
        ) from None


def _keras_app_preprocess(module: str) -> Callable:
    def preprocess(x):
        # Looked up at call time so that importing clf does not import every application.
        return getattr(keras.applications, module).preprocess_input(x)

    preprocess.__name__ = f"{module}_preprocess_input"
    return preprocess


# One mode per keras.applications module: each backbone uses its own preprocess_input.
for _module in ("vgg16", "vgg19", "resnet", "resnet_v2", "inception_v3", "inception_resnet_v2",
                "xception", "mobilenet", "mobilenet_v2", "mobilenet_v3", "densenet", "nasnet",
                "efficientnet", "efficientnet_v2", "convnext"):
    register_preprocess(_module, _keras_app_preprocess(_module))
register_preprocess("none", lambda x: x)
register_preprocess("rescale", lambda x: x / 255.0)


@keras.saving.register_keras_serializable(package="clf")
class Preprocess(keras.layers.Layer):
    """Applies a named preprocessing mode to raw RGB 0-255 images."""

    def __init__(self, mode: str, **kwargs):
        # Always float32: under mixed precision the mean subtraction must not lose precision.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        get_preprocess(mode)  # fail at build time, not at the first batch
        self.mode = mode

    def call(self, inputs):
        return get_preprocess(self.mode)(keras.ops.cast(inputs, "float32"))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="clf")
class Standardize(keras.layers.Layer):
    """``(features - mean) / std`` with the statistics as (non-trainable) weights.

    Keras' own ``Normalization`` layer keeps derived tensors that its legacy HDF5 loader does
    not refresh (a reloaded ``.h5`` model silently used mean 0, variance 1), so the head uses
    this layer, which reads its weights on every call and round-trips in every format.
    """

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.mean = self.add_weight(name="mean", shape=(width,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(width,), initializer="ones", trainable=False)

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        return (x - keras.ops.cast(self.mean, x.dtype)) / keras.ops.cast(self.std, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="clf")
class Mirror(keras.layers.Layer):
    """Images ``[batch, height, width, channels]`` mirrored left to right: the second view of
    ``--tta flip`` (a saved layer, so every exported format mirrors as training did)."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape
