"""What a data loader hands the engine, and the image-file pipeline loaders share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

# Suffixes tf.io.decode_image reads; anything else (.DS_Store, Thumbs.db, notes) is skipped.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# Where ``clf relabel`` moves the files a fixes list removes (it never deletes): inside the
# data folder, so nothing leaves it, and never read as a class.
REMOVED_FOLDER = "_removed"


def is_class_folder(path: Path) -> bool:
    """A folder that holds one class's images: not hidden, not clf relabel's removed files."""
    return path.is_dir() and not path.name.startswith(".") and path.name != REMOVED_FOLDER


@dataclass
class Split:
    """Which files (and labels) make up one split; kept for the run record and caching."""

    files: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class DatasetBundle:
    """A loaded dataset: sorted class names and unbatched ``(image, label)`` datasets.

    Images are float32 RGB in 0-255 at the requested size; labels are int32 indices into
    ``class_names``. ``splits`` lists the files behind each split when the data comes from
    files (empty for loaders that stream from elsewhere).
    """

    class_names: list[str]
    train: "object"  # tf.data.Dataset
    validation: "object | None" = None
    test: "object | None" = None
    splits: dict[str, Split] = field(default_factory=dict)
    # Optional: builds the same kind of dataset for any subset of files, so the feature
    # cache can decode only the files it misses. Without it a partial miss re-reads a split.
    make_dataset: Callable[[list[str], list[int]], object] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self, split: str = "train") -> dict[str, int]:
        """Images per class in one split (needs ``splits``)."""
        labels = self.splits[split].labels if split in self.splits else []
        return {name: labels.count(i) for i, name in enumerate(self.class_names)}


DEFAULT_CENTER_CROP = 0.875


class ImageSize(tuple):
    """``(height, width)`` of a model's input, and how a photo is brought to that size.

    ``center_crop``: the fraction of the photo kept in a centred box of the input's aspect
    ratio before resizing (never cropped below the input's own size). 0.875 is how ImageNet
    backbones were evaluated (resize to 256, centre crop 224); features of photos prepared
    that way separate classes better (hymenoptera, mobilenet_v2_035: linear probe 0.91-0.92
    against 0.88 for the squashed whole photo). 0 resizes the whole photo, aspect ratio not
    kept (the tutorial's way).

    The crop rides on the size, so every loader that hands ``image_size`` on to
    :func:`files_dataset` crops exactly as prediction does, with no new loader argument.
    """

    center_crop: float

    def __new__(cls, size: Sequence[int], center_crop: float | None = None):
        self = super().__new__(cls, (int(size[0]), int(size[1])))
        self.center_crop = float(getattr(size, "center_crop", 0.0) if center_crop is None else center_crop)
        return self

    def __getnewargs__(self):
        return tuple(self), self.center_crop

    def __repr__(self) -> str:
        return f"ImageSize({tuple(self)!r}, center_crop={self.center_crop:g})"


def decode_image(contents, image_size: Sequence[int]):
    """Decode JPEG/PNG/BMP/GIF bytes to float32 RGB 0-255 of ``image_size`` (first GIF
    frame): centre-cropped first when ``image_size`` is an :class:`ImageSize` with a crop."""
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    size = (int(image_size[0]), int(image_size[1]))
    crop = getattr(image_size, "center_crop", 0.0)
    if crop:
        image = _center_box(image, size, crop)
    # Antialiased: photos are usually several times the input size, and plain bilinear
    # sampling of a 2x or larger reduction aliases fine texture.
    return tf.image.resize(image, size, method="bilinear", antialias=True)  # float32, 0-255


def _center_box(image, size: tuple[int, int], fraction: float):
    """The centred box of ``size``'s aspect ratio covering ``fraction`` of the photo, but
    never smaller than ``size`` itself while the photo has the pixels: cropping a photo that
    is already smaller than the input throws away detail it lacks (flowers5's 128 px photos
    at 224 px lost 1.5-3 points of accuracy when cropped to 0.875)."""
    import tensorflow as tf

    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    aspect = size[1] / size[0]  # width / height of the input
    largest = tf.minimum(h, w / aspect)  # height of the largest centred box of that aspect
    box_h = tf.minimum(largest, tf.maximum(largest * fraction, float(size[0])))
    bh = tf.maximum(tf.cast(tf.round(box_h), tf.int32), 1)
    bw = tf.maximum(tf.cast(tf.round(box_h * aspect), tf.int32), 1)
    bh, bw = tf.minimum(bh, shape[0]), tf.minimum(bw, shape[1])
    return tf.image.crop_to_bounding_box(image, (shape[0] - bh) // 2, (shape[1] - bw) // 2, bh, bw)


def files_dataset(files: Sequence[str], labels: Sequence[int], image_size: Sequence[int],
                  substitute: "dict[str, str] | None" = None):
    """Unbatched ``(image, label)`` dataset over image files, decoded in parallel.

    ``substitute`` maps a file to the copy to read instead (the doctor's converted copies).
    A file that still fails to decode (changed on disk after the doctor looked) is dropped
    with a logged warning instead of stopping training mid-epoch."""
    import tensorflow as tf

    from clf.data.filecheck import as_tf_path

    substitute = substitute or {}
    size = ImageSize(image_size)
    # As bytes: a file name that is not UTF-8 is read like any other.
    paths = [as_tf_path(substitute.get(str(f), str(f))) for f in files]
    ds = tf.data.Dataset.from_tensor_slices((paths, list(map(int, labels))))
    ds = ds.map(
        lambda path, label: (decode_image(tf.io.read_file(path), size), tf.cast(label, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return ds.ignore_errors(log_warning=True)
