"""Where the model looked: a class activation map over the backbone's last feature map.

With the default head (scaling, dropout, one softmax Dense on average-pooled features) a
class's logit is exactly the spatial mean of a gradient-free map,
``CAM_c(i, j) = sum_k W[k, c] * (A[i, j, k] - mean_k) / std_k + b_c`` (Zhou et al. 2016).
Any other head gets Grad-CAM (Selvaraju et al. 2017): channels weighted by the mean gradient
of the class probability. A backbone with no spatial feature map (no 4-D output before
pooling, or 1x1 at the run's input size) gets none, and ``reason`` says why. Thumbnails are
decoded as training decoded them, so they show what the model saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence, TYPE_CHECKING

import numpy as np

from clf.data.images import ImageSize, files_dataset
from clf.inspect.saved_run import RunModel
from clf.infer.forward import predict

if TYPE_CHECKING:
    from PIL import Image

BATCH = 16
SIDE = 160  # pixels of a thumbnail's longer side
QUALITY = 85
OVERLAY_ALPHA = 0.45  # share of the heatmap's colour in an overlay


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
    kinds = (Standardize, keras.layers.Dropout, keras.layers.Dense)
    if (len(dense) != 1 or layers[-1] is not dense[0] or not all(isinstance(la, kinds) for la in layers)
            or dense[0].activation not in (keras.activations.softmax, keras.activations.linear)):
        return None
    return next((layer for layer in layers if isinstance(layer, Standardize)), None), dense[0]


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
        self.method = "cam" if self.linear is not None else "gradcam"
        outputs = conv if self.linear is not None else [conv, parts.backbone.output]
        self._model = keras.Model(parts.backbone.input, outputs)

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
            return self.class_maps(images)[np.arange(len(classes)), :, :, classes]
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


def decoded(files: Sequence[str], image_size: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(index into files, float32 RGB 0-255 image)`` in order; an undecodable file is skipped."""
    if not files:
        return
    # The labels carry each file's index, so a file the pipeline drops cannot shift the rest.
    for images, index in files_dataset(list(files), list(range(len(files))), image_size).batch(32):
        for i, image in zip(index.numpy().tolist(), images.numpy()):
            yield int(i), image


def thumbnail_size(image_size: ImageSize) -> ImageSize:
    """The model's input size scaled down to a thumbnail, with the same centre crop."""
    scale = SIDE / max(image_size)
    return ImageSize((max(1, round(image_size[0] * scale)), max(1, round(image_size[1] * scale))),
                     image_size.center_crop)


def _pil(image: np.ndarray) -> Image.Image:
    from PIL import Image

    picture = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    picture.thumbnail((SIDE, SIDE))
    return picture


def write_thumbnail(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _pil(image).save(path, format="JPEG", quality=QUALITY)


def write_overlay(image: np.ndarray, heatmap: np.ndarray, path: Path) -> None:
    """The thumbnail with ``heatmap`` (any size, any scale) stretched over it in 'jet' colours."""
    from matplotlib import colormaps
    from PIL import Image

    base = _pil(image)
    low, high = float(np.min(heatmap)), float(np.max(heatmap))
    unit = (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)
    grey = Image.fromarray(np.rint(255 * unit).astype(np.uint8)).resize(base.size, Image.Resampling.BILINEAR)
    colour = colormaps["jet"](np.asarray(grey, np.float32) / 255.0)[..., :3] * 255.0
    blended = (1 - OVERLAY_ALPHA) * np.asarray(base, np.float32) + OVERLAY_ALPHA * colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=QUALITY)
