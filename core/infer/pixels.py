"""The decoder's TensorFlow-free twin: Pillow decodes (the same pixels as ``decode_pixels``: JPEGs with
the accurate integer IDCT, no EXIF rotation) and numpy crops and resizes as ``fit_image`` does, so a
TFLite, ONNX or OpenVINO artifact predicts without importing TensorFlow.

The resize is ``tf.image.resize(bilinear, antialias=True)``: TensorFlow's ``ScaleAndTranslate`` with
the triangle kernel. It is separable: the per-axis weights ``clf.data.fitting.resize_weights`` builds
inside exported models, applied by their few nonzero taps, give it up to float rounding
(tests/test_predict_without_tf.py compares with the TensorFlow op).
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

# What decode_pixels (tf.io.decode_image) reads, in Pillow's names; MPO is cameras' JPEG with a preview.
PILLOW_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF"})


class Undecodable(ValueError):
    """Bytes that are no image clf reads (the text says why); callers turn it into their own error."""


def pillow_rgb(data: bytes) -> np.ndarray:
    """Encoded bytes as uint8 RGB ``[h, w, 3]``, as ``clf.data.images.decode_pixels`` decodes them
    (first GIF frame, alpha dropped); ``Undecodable`` otherwise."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in PILLOW_FORMATS:
                raise Undecodable(f"{image.format or 'unknown'} images are not read (JPEG, PNG, BMP or GIF expected)")
            return np.asarray(image.convert("RGB"), np.uint8)
    except Undecodable:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise Undecodable(str(exc) or type(exc).__name__) from None


def center_box(height: int, width: int, size: Sequence[int], fraction: float) -> tuple[int, int, int, int]:
    """``(top, left, box_height, box_width)``: ``clf.data.fitting.center_box`` in float32 numpy
    (the same roundings, so both crop the same pixels)."""
    if not fraction:
        return 0, 0, int(height), int(width)
    f32 = np.float32
    h, w = f32(height), f32(width)
    aspect = f32(size[1] / size[0])
    largest = min(h, f32(w / aspect))
    box_h = min(largest, max(f32(largest * f32(fraction)), f32(size[0])))
    bh = max(int(np.round(box_h)), 1)
    bw = max(int(np.round(f32(box_h * aspect))), 1)
    bh, bw = min(bh, int(height)), min(bw, int(width))
    return (int(height) - bh) // 2, (int(width) - bw) // 2, bh, bw


def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """``[out_size, in_size]`` float32 triangle-kernel weights along one axis, as
    ``clf.data.fitting.resize_weights`` computes them (rows sum to 1)."""
    f32 = np.float32
    inv_scale = f32(1.0) / (f32(out_size) / f32(in_size))
    inv_kernel = f32(1.0) / max(inv_scale, f32(1.0))
    sample = (np.arange(out_size, dtype=f32) + f32(0.5)) * inv_scale
    source = np.arange(in_size, dtype=f32) + f32(0.5)
    weights = np.maximum(f32(0.0), f32(1.0) - np.abs((source[None, :] - sample[:, None]) * inv_kernel))
    return (weights / weights.sum(axis=1, keepdims=True, dtype=f32)).astype(f32)


def resize_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``resize_weights`` as ``(indices, weights)``, both ``[out_size, taps]``: each output's few nonzero
    inputs (a triangle kernel covers about two input pixels per output pixel when shrinking), so the
    resize costs taps, not the input's width, per output pixel. Padding taps weigh 0."""
    dense = resize_weights(in_size, out_size)
    nonzero = dense > 0
    first = nonzero.argmax(axis=1)
    last = in_size - 1 - nonzero[:, ::-1].argmax(axis=1)
    taps = int((last - first).max()) + 1
    indices = np.minimum(first[:, None] + np.arange(taps), in_size - 1)
    weights = np.take_along_axis(dense, indices, axis=1)
    weights[first[:, None] + np.arange(taps) > last[:, None]] = 0.0
    return indices, weights.astype(np.float32)


def _resize_axis(image: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """``image`` resized along ``axis`` (0: rows, 1: columns), one tap at a time (never a copy of the
    image per tap: a 12 MP photo stays a few hundred MB below that)."""
    indices, weights = resize_taps(image.shape[axis], out_size)
    shape = [1, 1, 1]
    shape[axis] = out_size
    out = np.zeros([out_size if a == axis else n for a, n in enumerate(image.shape)], np.float32)
    for tap in range(indices.shape[1]):
        out += np.take(image, indices[:, tap], axis=axis) * weights[:, tap].reshape(shape)
    return out


def fit_pixels(image: Any, size: Sequence[int]) -> np.ndarray:
    """An RGB image ``[h, w, 3]`` (any dtype, 0-255) to float32 ``size`` as ``clf.data.images.fit_image``
    does it: the ``ImageSize`` centre crop, then the antialiased bilinear resize (columns, then rows)."""
    out_h, out_w = int(size[0]), int(size[1])
    image = np.asarray(image)
    top, left, bh, bw = center_box(image.shape[0], image.shape[1], (out_h, out_w),
                                   float(getattr(size, "center_crop", 0.0)))
    x = image[top:top + bh, left:left + bw]
    x = _resize_axis(x, 1, out_w) if bw != out_w else x
    x = _resize_axis(x, 0, out_h) if bh != out_h else x
    return np.ascontiguousarray(x, np.float32)


def decode_fit(data: bytes, size: Sequence[int]) -> np.ndarray:
    """Encoded bytes to the model's input: ``pillow_rgb`` then ``fit_pixels``."""
    return fit_pixels(pillow_rgb(data), size)
