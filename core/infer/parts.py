"""A clf classifier's frozen feature extractor and head, so the extractor can run in
another runtime (clf.infer.choice) while the head stays in TensorFlow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clf.data.preprocessing import Preprocess
from clf.data.fitting import fixed_model

if TYPE_CHECKING:
    import keras


def split(model: "keras.Model") -> "tuple[keras.Model, keras.Model] | None":
    """``(extractor, head)`` of a model ``clf.train.model.join`` built (reloaded too); None
    for any other model. A photo model (``clf.data.fitting.photo_model``) splits as its
    fixed-size classifier inside."""
    import keras


    model = fixed_model(model)
    layers = list(model.layers)
    if len(layers) != 4 or not isinstance(layers[1], Preprocess) or layers[3].name != "head" \
            or not all(isinstance(layer, keras.Model) for layer in layers[2:]):
        return None
    preprocess, backbone, head = layers[1:]
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    extractor = keras.Model(inputs, backbone(preprocess(inputs), training=False), name="feature_extractor")
    return extractor, head
