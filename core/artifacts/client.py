"""The deployer's path into an artifact: Pillow decodes the photo, the model crops and resizes.

``labels.json`` records each artifact's input and test vectors for integrators; verification
requires this path to give clf's own answer (``CLIENT_TOLERANCE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TYPE_CHECKING

import numpy as np
from clf.files import file_hash

if TYPE_CHECKING:
    from clf.artifacts.predict import Predictor

# Same pixels from Pillow and clf (accurate integer IDCT); only resize rounding remains.
CLIENT_TOLERANCE = 1e-3
CLIENT_IMAGES = 8  # photos per artifact: the path either matches or it does not
TEST_VECTORS = 3


def input_record(kind: str, size: Sequence[int], quantized: bool = False) -> dict:
    """What one artifact takes as input, for ``labels.json``'s ``inputs``."""
    dtype = "uint8" if quantized else "float32"
    if kind == "photo":
        return {"kind": "photo", "name": "image", "shape": [None, None, None, 3], "dtype": dtype,
                "pixels": "RGB 0-255 as decoded, any height and width (a batch shares one size); "
                          "the centre crop and resize happen inside the model"}
    return {"kind": "fixed", "name": "image", "shape": [None, int(size[0]), int(size[1]), 3], "dtype": dtype,
            "pixels": "RGB 0-255, already centre-cropped and resized as 'resize' describes"}


def takes_photo(labels: dict, exporter: str) -> bool:
    """Whether ``exporter``'s artifact here takes a photo of any size (none recorded: fixed)."""
    return labels.get("inputs", {}).get(exporter, {}).get("kind") == "photo"


def pillow_pixels(path: str | Path) -> np.ndarray:
    """One image file as a client decodes it: Pillow, RGB, uint8 ``[h, w, 3]``, no EXIF rotation (as clf)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.uint8)


def client_probabilities(predictor: Predictor, files: Sequence[str | Path]) -> np.ndarray:
    """``predictor``'s probabilities per file, Pillow-decoded and passed raw, one call each (sizes differ)."""
    rows = [np.asarray(predictor.predict_batch(pillow_pixels(f)[None].astype(np.float32)), np.float32)[0]
            for f in files]
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def test_vectors(files: Sequence[str | Path], probabilities: np.ndarray) -> list[dict]:
    """``[{file, sha256, height, width, probabilities}]`` of the first ``TEST_VECTORS`` files, for integrators."""
    vectors = []
    for f, probs in zip(list(files)[:TEST_VECTORS], probabilities):
        pixels = pillow_pixels(f)
        vectors.append({"file": Path(f).name, "sha256": file_hash(Path(f)), "height": int(pixels.shape[0]),
                        "width": int(pixels.shape[1]), "probabilities": [round(float(p), 6) for p in probs]})
    return vectors
