"""Data: ``DatasetBundle``, image decoding, the dataset doctor, preprocessing, augmentation and
the small-data guardrails. The re-exports below keep old imports working; new code imports from ``clf``."""

from clf.data.images import (  # noqa: F401  (re-exported)
    DEFAULT_CENTER_CROP,
    IMAGE_SUFFIXES,
    DatasetBundle,
    ImageSize,
    Split,
    decode_image,
    files_dataset,
    is_image_file,
)
