"""What a data loader hands the engine, and the image-file pipeline loaders share."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from clf.data.filecheck import as_tf_path

# what tf.io.decode_image reads; anything else is skipped
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# where ``clf relabel`` moves removed files (it never deletes); never read as a class
REMOVED_FOLDER = "_removed"


def is_class_folder(path: Path) -> bool:
    """A folder that holds one class's images: not hidden, not clf relabel's removed files."""
    return path.is_dir() and not path.name.startswith(".") and path.name != REMOVED_FOLDER


@dataclass
class Split:
    """Which files (and labels) make up one split; kept for the run record and caching."""

    files: list[str]
    labels: list[int]
    # Multi-label data: each file's label indices (``labels`` then holds the first, or 0 for none).
    targets: list[tuple[int, ...]] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def multi_hot(self, num_classes: int) -> Any:
        """``[files, classes]`` float32 0/1 matrix of ``targets`` (one-hot of ``labels`` without)."""
        import numpy as np

        out = np.zeros((len(self.files), num_classes), np.float32)
        for row, indices in enumerate(self.targets if self.targets is not None else [(y,) for y in self.labels]):
            out[row, list(indices)] = 1.0
        return out


@dataclass
class DatasetBundle:
    """A loaded dataset: sorted class names and unbatched ``(image, label)`` datasets of float32
    RGB 0-255 images and int32 labels. ``splits`` lists each split's files, when there are files.
    """

    class_names: list[str]
    train: Any  # tf.data.Dataset
    validation: Any = None  # tf.data.Dataset or None
    test: Any = None
    splits: dict[str, Split] = field(default_factory=dict)
    # optional: a dataset for any subset of files, so the feature cache decodes only its misses
    make_dataset: Callable[[list[str], list[int]], Any] | None = None
    # "single" (one class an image, softmax) or "multilabel" (any number, sigmoid; Split.targets)
    task: str = "single"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    def counts(self, split: str = "train") -> dict[str, int]:
        """Images per class in one split (needs ``splits``); multi-label: images carrying each label."""
        s = self.splits.get(split)
        if s is not None and s.targets is not None:
            return {name: sum(1 for t in s.targets if i in t) for i, name in enumerate(self.class_names)}
        labels = s.labels if s is not None else []
        return {name: labels.count(i) for i, name in enumerate(self.class_names)}


DEFAULT_CENTER_CROP = 0.875


class ImageSize(tuple):
    """``(height, width)`` of a model's input, and ``center_crop``: the fraction of the photo
    kept in a centred box of the input's aspect before resizing (never below the input size;
    0.875 as ImageNet backbones were evaluated, 0 squashes the whole photo). The crop rides on
    the size, so any loader passing ``image_size`` to ``files_dataset`` crops as prediction does.
    """

    center_crop: float

    def __new__(cls, size: Sequence[int], center_crop: float | None = None) -> ImageSize:
        self = super().__new__(cls, (int(size[0]), int(size[1])))
        self.center_crop = float(getattr(size, "center_crop", 0.0) if center_crop is None else center_crop)
        return self

    def __getnewargs__(self) -> tuple[tuple[int, int], float]:
        return tuple(self), self.center_crop

    def __repr__(self) -> str:
        return f"ImageSize({tuple(self)!r}, center_crop={self.center_crop:g})"


# JPEG DCT scaling (1/2, 1/4, 1/8) skips most of a full decode's work; used only while the scaled
# box still covers this many times the input per side, so features match the full decode (tested).
DCT_MARGIN = 2
DCT_RATIOS = (2, 4, 8)


def decode_image(contents: Any, image_size: Sequence[int], scale_jpeg: bool = True) -> Any:
    """Decode JPEG/PNG/BMP/GIF bytes to float32 RGB 0-255 of ``image_size`` (first GIF frame),
    centre-cropped when ``image_size`` is an ``ImageSize`` with a crop; a JPEG much larger than
    the input is decoded at a reduced DCT scale (``DCT_MARGIN``). ``scale_jpeg=False`` decodes
    JPEGs in full: prediction always does (exported models take the full decode), and extraction
    does where ``may_scale`` says no file needs the per-image branch (benchmarks/extract.py)."""
    import tensorflow as tf

    size = (int(image_size[0]), int(image_size[1]))
    crop = getattr(image_size, "center_crop", 0.0)

    def full() -> Any:
        return fit_image(decode_pixels(contents), image_size)

    if not scale_jpeg:
        return full()
    index = tf.cond(tf.io.is_jpeg(contents),
                    lambda: dct_scale_index(tf.io.extract_jpeg_shape(contents)[:2], size, crop),
                    lambda: tf.constant(0, tf.int32))
    scaled = [functools.partial(_decode_scaled_jpeg, contents, r, size, crop) for r in DCT_RATIOS]
    image = tf.switch_case(index, [full, *scaled])
    image.set_shape([size[0], size[1], 3])
    return image


def decode_pixels(contents: Any) -> Any:
    """One encoded image as uint8 RGB ``[h, w, 3]``, exactly as Pillow decodes it: JPEGs with the
    accurate integer IDCT, since TensorFlow's fast default shifts predictions against Pillow
    clients (benchmarks/portable.py)."""
    import tensorflow as tf

    image = tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def fit_image(image: Any, image_size: Sequence[int]) -> Any:
    """A decoded RGB image ``[h, w, 3]`` brought to ``image_size`` as every clf path does it:
    the ``ImageSize`` centre crop, then an antialiased bilinear resize, float32."""
    import tensorflow as tf

    size = (int(image_size[0]), int(image_size[1]))
    crop = getattr(image_size, "center_crop", 0.0)
    if crop:
        image = _center_box(image, size, crop)
    # antialiased: plain bilinear aliases fine texture when shrinking 2x or more
    return tf.image.resize(image, size, method="bilinear", antialias=True)  # float32, 0-255


def dct_scale_index(shape: Any, size: tuple[int, int], fraction: float) -> Any:
    """0 for a full decode, else 1 + the ``DCT_RATIOS`` index of the largest scale at which the
    centre box still covers ``DCT_MARGIN`` times ``size``."""
    import tensorflow as tf

    _, _, box_h, box_w = (tf.cast(v, tf.float32) for v in _box(shape, size, fraction))
    index = tf.constant(0, tf.int32)
    for i, ratio in enumerate(DCT_RATIOS, start=1):
        fits = tf.logical_and(box_h / ratio >= DCT_MARGIN * size[0], box_w / ratio >= DCT_MARGIN * size[1])
        index = tf.where(fits, tf.constant(i, tf.int32), index)
    return index


def may_scale(paths: Sequence, image_size: Sequence[int]) -> bool:
    """Whether any file may be a JPEG large enough for DCT scaling, from headers alone; may
    over-report, never miss (``decode_image`` decides exactly)."""
    from PIL.JpegImagePlugin import JpegImageFile  # parses the header only, no pixel limit

    size = (int(image_size[0]), int(image_size[1]))
    fraction = getattr(image_size, "center_crop", 0.0)
    for path in paths:
        try:
            f = open(path, "rb")
        except OSError:
            continue
        with f:
            if f.read(3) != b"\xff\xd8\xff":  # what tf.io.is_jpeg checks
                continue
            f.seek(0)
            try:
                w, h = (float(v) for v in JpegImageFile(f).size)
            except Exception:  # a JPEG whose header Pillow cannot follow: let TF decide
                return True
        if fraction:
            aspect = size[1] / size[0]
            largest = min(h, w / aspect)
            box_h = min(largest, max(largest * fraction, size[0]))
            h, w = box_h, box_h * aspect
        # one pixel of slack for decode_image's box rounding
        if (h / DCT_RATIOS[0] >= DCT_MARGIN * size[0] - 1
                and w / DCT_RATIOS[0] >= DCT_MARGIN * size[1] - 1):
            return True
    return False


def _decode_scaled_jpeg(contents: Any, ratio: int, size: tuple[int, int], fraction: float) -> Any:
    """Decode at 1/``ratio`` and resize the full decode's centre box at its exact sub-pixel
    position: cropping on whole scaled pixels would shift features."""
    import tensorflow as tf

    top, left, box_h, box_w = _box(tf.io.extract_jpeg_shape(contents)[:2], size, fraction)
    image = tf.cast(tf.io.decode_jpeg(contents, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE"), tf.float32)
    r = float(ratio)
    y0, x0 = tf.cast(top, tf.float32) / r, tf.cast(left, tf.float32) / r  # box corner, scaled pixels
    y1, x1 = tf.cast(top + box_h, tf.float32) / r, tf.cast(left + box_w, tf.float32) / r
    iy, ix = tf.cast(tf.floor(y0), tf.int32), tf.cast(tf.floor(x0), tf.int32)
    image = image[iy:tf.cast(tf.math.ceil(y1), tf.int32), ix:tf.cast(tf.math.ceil(x1), tf.int32)]
    scale = tf.stack([size[0] / (y1 - y0), size[1] / (x1 - x0)])
    translation = -tf.stack([y0 - tf.cast(iy, tf.float32), x0 - tf.cast(ix, tf.float32)]) * scale
    # tf.image.resize(antialias=True)'s kernel, with the box's fractional corner as translation
    out = tf.raw_ops.ScaleAndTranslate(images=image[None], size=size, scale=scale, translation=translation,
                                       kernel_type="triangle", antialias=True)
    return out[0]


def _box(shape: Any, size: tuple[int, int], fraction: float) -> Any:
    """``(top, left, height, width)`` of the centre box: ``clf.data.fitting.center_box``, the
    one exported models cut too (imported here: it imports Keras)."""
    from clf.data.fitting import center_box

    return center_box(shape[0], shape[1], size, fraction)


def _center_box(image: Any, size: tuple[int, int], fraction: float) -> Any:
    """The centred box of ``size``'s aspect covering ``fraction`` of the photo, but never smaller
    than ``size`` while the photo allows: cropping small photos loses detail they lack."""
    import tensorflow as tf

    return tf.image.crop_to_bounding_box(image, *_box(tf.shape(image)[:2], size, fraction))


def files_dataset(files: Sequence[str], labels: Sequence[int], image_size: Sequence[int],
                  substitute: "dict[str, str] | None" = None) -> Any:
    """Unbatched ``(image, label)`` dataset over image files, decoded in parallel.
    ``substitute`` maps a file to the copy to read instead (the doctor's conversions). A file
    failing to decode is dropped with a warning rather than stopping training mid-epoch."""
    import tensorflow as tf

    substitute = substitute or {}
    size = ImageSize(image_size)
    paths = [as_tf_path(substitute.get(str(f), str(f))) for f in files]
    scale = may_scale(paths, size)  # else skip per-image branching
    ds = tf.data.Dataset.from_tensor_slices((paths, list(map(int, labels))))
    ds = ds.map(
        lambda path, label: (decode_image(tf.io.read_file(path), size, scale), tf.cast(label, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return ds.ignore_errors(log_warning=True)
