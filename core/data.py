"""What a data loader hands the engine, and the image-file pipeline loaders share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

# Suffixes tf.io.decode_image reads; anything else (.DS_Store, Thumbs.db, notes) is skipped.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


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


def decode_image(contents, image_size: Sequence[int]):
    """Decode JPEG/PNG/BMP/GIF bytes to float32 RGB 0-255 of ``image_size`` (first GIF frame)."""
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.image.resize(image, image_size, method="bilinear")  # float32, 0-255


def files_dataset(files: Sequence[str], labels: Sequence[int], image_size: Sequence[int],
                  substitute: "dict[str, str] | None" = None):
    """Unbatched ``(image, label)`` dataset over image files, decoded in parallel.

    ``substitute`` maps a file to the copy to read instead (the doctor's converted copies).
    A file that still fails to decode (changed on disk after the doctor looked) is dropped
    with a logged warning instead of stopping training mid-epoch."""
    import tensorflow as tf

    substitute = substitute or {}
    size = tuple(int(s) for s in image_size)
    paths = [substitute.get(str(f), str(f)) for f in files]
    ds = tf.data.Dataset.from_tensor_slices((paths, list(map(int, labels))))
    ds = ds.map(
        lambda path, label: (decode_image(tf.io.read_file(path), size), tf.cast(label, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return ds.ignore_errors(log_warning=True)
