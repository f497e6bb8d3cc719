"""The tutorial's augmentation (shear 0.2, zoom 0.2, horizontal flip) as Keras layers."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def augmentation_layers(seed: int) -> Any:
    """Random flip/zoom/shear on batches of raw RGB 0-255 images; training only."""
    import keras

    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomZoom(0.2, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomShear(x_factor=0.2, y_factor=0.0, fill_mode="nearest", seed=seed + 2),
    ], name="augmentation")


def augmentation_spec(seed: int) -> str:
    """A short hash of the augmentation's config, for augmented copies' cache keys."""
    layers = augmentation_layers(seed)
    configs = [{k: v for k, v in layer.get_config().items() if k not in ("name", "seed")}
               for layer in layers.layers]
    text = json.dumps([type(l).__name__ for l in layers.layers] + configs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
