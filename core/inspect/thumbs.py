"""Thumbnails and heatmap overlays for the report page: small JPEGs beside it, decoded as
training decoded them (centre crop, then resize) so they show what the model saw."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence, TYPE_CHECKING

import numpy as np
from clf.data.images import files_dataset, ImageSize

if TYPE_CHECKING:
    from PIL import Image
    from clf.data.images import ImageSize

SIDE = 160  # pixels of a thumbnail's longer side
QUALITY = 85
OVERLAY_ALPHA = 0.45  # share of the heatmap's colour in an overlay


def decoded(files: Sequence[str], image_size: Sequence[int], batch: int = 32) -> Iterator[tuple[int, np.ndarray]]:
    """``(index into files, float32 RGB 0-255 image)`` in order; an undecodable file is skipped."""
    if not files:
        return
    # The labels carry each file's index, so a file the pipeline drops cannot shift the rest.
    for images, index in files_dataset(list(files), list(range(len(files))), image_size).batch(batch):
        for i, image in zip(index.numpy().tolist(), images.numpy()):
            yield int(i), image


def thumbnail_size(image_size: ImageSize) -> ImageSize:
    """The model's input size scaled down to a thumbnail, with the same centre crop."""
    scale = SIDE / max(image_size)
    return ImageSize((max(1, round(image_size[0] * scale)), max(1, round(image_size[1] * scale))),
                     getattr(image_size, "center_crop", 0.0))


def _pil(image: np.ndarray) -> Image.Image:
    from PIL import Image

    picture = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    picture.thumbnail((SIDE, SIDE))
    return picture


def write_thumbnail(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _pil(image).save(path, format="JPEG", quality=QUALITY)
    return path


def write_overlay(image: np.ndarray, heatmap: np.ndarray, path: Path) -> Path:
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
    return path
