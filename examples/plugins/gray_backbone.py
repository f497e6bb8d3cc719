"""An unpackaged clf plugin: load it with ``clf ... --plugin examples/plugins/gray_backbone.py``.

It adds ``tiny_gray``, a small untrained CNN that looks at brightness only, with its own
preprocessing mode. Two things make a plugin: functions marked ``@clf.hookimpl`` named
after a hook, and calls to the ``register`` callback they receive.
"""

import clf
from clf import register_preprocess


def _to_gray(x):
    import keras

    gray = keras.ops.mean(x, axis=-1, keepdims=True) / 255.0
    return keras.ops.concatenate([gray, gray, gray], axis=-1)


register_preprocess("gray01", _to_gray)


def build(input_shape, weights):
    import keras

    if weights not in (None,):
        raise clf.WeightsError(f"tiny_gray has no pretrained weights (got {weights!r}); pass --weights none.")
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, outputs, name="tiny_gray")


@clf.hookimpl
def register_backbones(register):
    register("tiny_gray", build, preprocess="gray01", input_size=(64, 64), params=5088, features=32,
             description="Example plugin: a two-conv CNN on brightness")
