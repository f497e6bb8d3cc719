"""Data: what a loader hands the engine (``DatasetBundle``), image decoding with the centre
crop, the dataset doctor, preprocessing layers, augmentation and the small-data guardrails.

``clf.data.ImageSize``, ``files_dataset``, ``decode_image`` and friends stay importable from
here (docs/plugins.md named this path before the package existed); new code imports them
from ``clf`` itself.
"""

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
