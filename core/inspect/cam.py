"""Where the model looked: a class activation map over the backbone's last feature map.

With the default head (scaling, dropout, one softmax Dense on average-pooled features) a
class's logit is exactly the spatial mean of a gradient-free map,
``CAM_c(i, j) = sum_k W[k, c] * (A[i, j, k] - mean_k) / std_k + b_c`` (Zhou et al. 2016).
Any other head gets Grad-CAM (Selvaraju et al. 2017): channels weighted by the mean gradient
of the class probability. A backbone with no spatial feature map (no 4-D output before
pooling, or 1x1 at the run's input size) gets none, and ``reason`` says why.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from clf.inspect.saved_run import RunModel
from clf.infer.forward import predict

BATCH = 16


def _feature_map(backbone: Any) -> tuple[Any, bool]:
    """``(the last 4-D tensor before the pooled output, pooled by a plain global average?)``."""
    import keras

    last = backbone.layers[-1]
    if isinstance(last, keras.layers.GlobalAveragePooling2D) and not getattr(last, "keepdims", False):
        return last.input, True
    for layer in reversed(backbone.layers[:-1]):
        if isinstance(layer, keras.layers.InputLayer):
            break  # the image itself is no feature map
        try:
            output = layer.output
        except (AttributeError, ValueError):
            continue
        if not isinstance(output, (list, tuple)) and len(output.shape) == 4:
            return output, False
    return None, False


def _linear_head(head: Any) -> tuple[Any, Any] | None:
    """``(Standardize layer or None, the Dense layer)`` when the head is the linear default."""
    import keras

    from clf.data.preprocessing import Standardize

    layers = [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    if len(dense) != 1 or layers[-1] is not dense[0]:
        return None
    if not all(isinstance(layer, (Standardize, keras.layers.Dropout, keras.layers.Dense)) for layer in layers):
        return None
    if dense[0].activation not in (keras.activations.softmax, keras.activations.linear):
        return None
    scale = [layer for layer in layers if isinstance(layer, Standardize)]
    return (scale[0] if scale else None), dense[0]


class Heatmaps:
    """``maps(images, classes)`` for one run's model; ``method`` is ``cam``, ``gradcam`` or None."""

    def __init__(self, parts: RunModel) -> None:
        import keras

        from clf.data.preprocessing import get_preprocess

        self.parts = parts
        self.preprocess = get_preprocess(parts.preprocess)
        self.method: str | None = None
        self.reason: str | None = None
        conv, averaged = _feature_map(parts.backbone)
        name = parts.backbone.name
        if conv is None:
            self.reason = (f"backbone {name!r} has no spatial feature map (no 4-D layer output before its "
                           f"pooled features), so there is no image region to point at")
            return
        if conv.shape[1] is not None and conv.shape[1] * conv.shape[2] < 2:
            self.reason = (f"backbone {name!r} ends in a {conv.shape[1]}x{conv.shape[2]} feature map at "
                           f"this input size, which says nothing about where in the image it looked")
            return
        self.linear = _linear_head(parts.head) if averaged else None
        if self.linear is not None:
            self.method = "cam"
            self._model = keras.Model(parts.backbone.input, conv)
        else:
            self.method = "gradcam"
            self._model = keras.Model(parts.backbone.input, [conv, parts.backbone.output])

    def class_maps(self, images: np.ndarray) -> np.ndarray:
        """CAM only: ``[n, h, w, classes]``, whose spatial mean is each class's logit."""
        assert self.linear is not None
        scale, dense = self.linear
        kernel = np.asarray(dense.kernel.numpy(), np.float64)
        bias = np.asarray(dense.bias.numpy(), np.float64) if dense.use_bias else 0.0
        if scale is not None:
            std = np.asarray(scale.std.numpy(), np.float64)
            mean = np.asarray(scale.mean.numpy(), np.float64)
            kernel, bias = kernel / std[:, None], bias - (mean / std) @ kernel

        out = []
        for start in range(0, len(images), BATCH):
            # A copy: Keras' preprocess_input works in place on NumPy arrays.
            x = np.asarray(self.preprocess(np.array(images[start:start + BATCH], np.float32)), np.float32)
            out.append(predict(self._model, x).astype(np.float64) @ kernel + bias)
        return np.concatenate(out)

    def maps(self, images: np.ndarray, classes: Sequence[int] | np.ndarray) -> np.ndarray:
        """``[n, h, w]``: for each image, the map of the class in ``classes`` (e.g. the predicted one)."""
        if self.method is None:
            raise ValueError(self.reason)
        classes = np.asarray(classes, int)
        if self.method == "cam":
            maps = self.class_maps(images)
            return maps[np.arange(len(classes)), :, :, classes]
        return np.concatenate([self._gradcam(images[s:s + BATCH], classes[s:s + BATCH])
                               for s in range(0, len(images), BATCH)])

    def _gradcam(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        x = self.preprocess(tf.constant(np.asarray(images, np.float32)))
        with tf.GradientTape() as tape:
            conv, pooled = self._model(x, training=False)
            probs = self.parts.head(pooled, training=False)
            score = tf.reduce_sum(probs * tf.one_hot(classes, probs.shape[-1], dtype=probs.dtype), axis=1)
        grads = tape.gradient(score, conv)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1)).numpy().astype(np.float64)
