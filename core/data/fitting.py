"""The centre crop and resize that bring a photo to a model's input, built from ops every
runtime has, so an exported model can take the decoded photo itself.

TFLite and ONNX lack ``decode_image``'s ``ScaleAndTranslate`` kernel; it is separable, so two
matrix products of dense per-axis weights (``resize_weights``) give the same resize up to float
rounding (tested), while training keeps TensorFlow's faster kernel (docs/export.md).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from clf.errors import ModelError


def center_box(height: Any, width: Any, size: Sequence[int], fraction: float) -> Any:
    """``(top, left, box_height, box_width)`` int32 tensors of the centred box ``decode_image``
    crops: the input's aspect ratio, ``fraction`` of the photo but not below the input size
    while the photo has the pixels; the whole photo when ``fraction`` is 0."""
    import tensorflow as tf

    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    if not fraction:
        return tf.constant(0, tf.int32), tf.constant(0, tf.int32), height, width
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    aspect = size[1] / size[0]  # width / height of the input
    largest = tf.minimum(h, w / aspect)  # height of the largest centred box of that aspect
    box_h = tf.minimum(largest, tf.maximum(largest * fraction, float(size[0])))
    bh = tf.maximum(tf.cast(tf.round(box_h), tf.int32), 1)
    bw = tf.maximum(tf.cast(tf.round(box_h * aspect), tf.int32), 1)
    bh, bw = tf.minimum(bh, height), tf.minimum(bw, width)
    return (height - bh) // 2, (width - bw) // 2, bh, bw


def resize_weights(in_size: Any, out_size: int) -> Any:
    """``[out_size, in_size]`` float32 weights of ``ScaleAndTranslate``'s triangle kernel along
    one axis: output ``i`` samples at ``(i + 0.5) * in / out``; input ``j`` weighs
    ``max(0, 1 - |j + 0.5 - sample| / k)``, ``k = max(in / out, 1)``; rows sum to 1."""
    import tensorflow as tf

    in_f = tf.cast(in_size, tf.float32)
    inv_scale = 1.0 / (float(out_size) / in_f)  # as the kernel computes it: 1 / (out / in)
    inv_kernel = 1.0 / tf.maximum(inv_scale, 1.0)
    sample = (tf.cast(tf.range(out_size), tf.float32) + 0.5) * inv_scale
    source = tf.cast(tf.range(in_size), tf.float32) + 0.5
    weights = tf.maximum(0.0, 1.0 - tf.abs((source[None, :] - sample[:, None]) * inv_kernel))
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def fit_batch(images: Any, size: Sequence[int], fraction: float) -> Any:
    """Photos ``[n, h, w, 3]`` (any size, 0-255) -> float32 ``[n, *size, 3]``, cropped and
    resized as ``decode_image`` does one photo."""
    import tensorflow as tf

    size = (int(size[0]), int(size[1]))
    x = tf.cast(images, tf.float32)
    shape = tf.shape(x)
    top, left, bh, bw = center_box(shape[1], shape[2], size, fraction)
    # not crop_to_bounding_box: its shape asserts are no TFLite builtin
    x = tf.slice(x, tf.stack([0, top, left, 0]), tf.stack([-1, bh, bw, 3]))
    x.set_shape([None, None, None, 3])  # the converters need the channels static (conv)
    x = tf.transpose(x, [0, 3, 1, 2])  # [n, 3, h, w]: both products act on the last axes
    x = tf.matmul(x, resize_weights(bw, size[1]), transpose_b=True)  # [n, 3, h, out_w]
    x = tf.matmul(resize_weights(bh, size[0]), x)  # [n, 3, out_h, out_w]
    x = tf.transpose(x, [0, 2, 3, 1])
    x.set_shape([None, size[0], size[1], 3])
    return x


@keras.saving.register_keras_serializable(package="clf")
class FitPhoto(keras.layers.Layer):
    """``fit_batch`` as a layer; an image already at the input size passes unchanged (identity
    weights), so the model also takes pre-resized images."""

    def __init__(self, size: Sequence[int], center_crop: float = 0.0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.size = (int(size[0]), int(size[1]))
        self.center_crop = float(center_crop)

    def call(self, inputs: Any) -> Any:
        return fit_batch(inputs, self.size, self.center_crop)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], *self.size, 3)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": list(self.size), "center_crop": self.center_crop}


PHOTO_MODEL_NAME = "clf_photo_classifier"


def photo_model(model: Any, size: Sequence[int]) -> Any:
    """``model`` behind a ``FitPhoto`` layer, taking photos of any size. ``size``: the model's
    input size, a pair or an ``clf.data.images.ImageSize`` (whose centre crop is used)."""
    import numpy as np

    if is_photo_model(model):
        return model
    inputs = keras.Input(shape=(None, None, 3), name="image")
    fitted = FitPhoto(size, getattr(size, "center_crop", 0.0), name="fit_photo")(inputs)
    photo = keras.Model(inputs, model(fitted), name=PHOTO_MODEL_NAME)
    # Called once: Keras' ONNX export refuses a model that never ran ("has never called").
    photo(np.zeros((1, int(size[0]), int(size[1]), 3), np.float32), training=False)
    return photo


def is_photo_model(model: Any) -> bool:
    return any(isinstance(layer, FitPhoto) for layer in model.layers)


def fixed_model(model: Any) -> Any:
    """The fixed-size classifier inside a ``photo_model`` (``model`` itself otherwise)."""
    if not is_photo_model(model):
        return model
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def check_input_size(model: keras.Model, input_size: Sequence[int], labels_path: str) -> None:
    """ModelError unless labels.json's ``input_size`` is the classifier's, rather than failing
    deep inside Keras."""
    shape = tuple(fixed_model(model).input_shape[1:3])
    if None not in shape and shape != tuple(int(v) for v in input_size):
        raise ModelError(f"{labels_path!r} gives input_size {list(input_size)}, but the model takes "
                         f"{list(shape)}; expected the record written with the model. Restore labels.json "
                         f"or train again.")
