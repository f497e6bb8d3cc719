"""clf plugin: backbone ``scratch_cnn``, the small CNN the tutorial trained from scratch.

Conv 32 3x3, max-pool, Conv 64 2x2, max-pool, flatten, Dense 256, dropout 0.5 (the head
adds the softmax). It has no pretrained weights, so it is registered ``trainable=True``:
clf trains it together with the head instead of freezing it. Its preprocessing is the
tutorial's ``rescale=1/255``, right for a network that learns from raw pixels.
"""

from __future__ import annotations

import clf
from clf import register_preprocess

__version__ = "0.1.0"

PREPROCESS = "scratch_cnn_rescale"


def rescale(x):
    """RGB 0-255 -> 0-1, as the tutorial's ImageDataGenerator(rescale=1/255)."""
    return x / 255.0


# Registered at import, so a saved model that names it reloads once the plugin is installed.
register_preprocess(PREPROCESS, rescale)


def build(input_shape, weights):
    """The tutorial's CNN without its softmax layer: image -> 256 features."""
    import keras

    if weights == "imagenet":
        raise clf.WeightsError(
            "Backbone 'scratch_cnn' is trained from scratch and has no ImageNet weights; "
            "expected --weights none (random start) or a weights file saved from an earlier "
            "scratch_cnn of the same input size. Pass --weights none."
        )
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, (3, 3), padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D((2, 2), name="pool1")(x)
    x = keras.layers.Conv2D(64, (2, 2), padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D((2, 2), name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, activation="relu", name="dense256")(x)
    outputs = keras.layers.Dropout(0.5, name="dropout")(x)
    model = keras.Model(inputs, outputs, name="scratch_cnn")
    if weights is not None:
        try:
            model.load_weights(str(weights))
        except Exception as exc:
            raise clf.WeightsError(
                f"Weights file {str(weights)!r} does not fit backbone 'scratch_cnn' at input "
                f"{tuple(input_shape)}: {type(exc).__name__}: {exc}. Expected weights saved "
                f"from scratch_cnn at the same --image-size, or pass --weights none."
            ) from None
    return model


def _params(size: int = 100) -> int:
    """Parameter count at the default input size, for listings (nothing is built)."""
    side = (size // 2) // 2
    return (3 * 3 * 3 * 32 + 32) + (2 * 2 * 32 * 64 + 64) + (side * side * 64 * 256 + 256)


@clf.hookimpl
def register_backbones(register):
    register("scratch_cnn", build, preprocess=PREPROCESS, input_size=(100, 100), min_size=8,
             params=_params(), features=256, trainable=True, aliases=("tutorial_cnn",),
             description="The tutorial's small CNN (Conv32-Conv64-Dense256), trained from scratch")
