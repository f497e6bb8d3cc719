"""The label record that travels with every artifact: ``labels.json`` beside the model.

``predict`` reads the class order from here and never guesses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clf.errors import ModelError
from clf.files import write_json

LABELS_FILE = "labels.json"
FORMAT = "clf-labels/1"


def make_metadata(class_names, backbone: str, input_size, preprocess: str, **extra) -> dict[str, Any]:
    """``input_size``: a ``clf.data.images.ImageSize`` (its centre crop is recorded) or a pair."""
    from clf import __version__

    crop = float(getattr(input_size, "center_crop", 0.0))
    how = (f"centre crop of {crop:g} of the photo at the input's aspect ratio, then" if crop
           else "the whole photo")
    return {
        "format": FORMAT,
        "class_names": list(class_names),
        "backbone": backbone,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "input": "RGB float32 in 0-255, shape [batch, height, width, 3]",
        # How a photo becomes the input: outside the model, so every runtime must do it.
        "resize": {"center_crop": crop, "method": "bilinear, antialiased",
                   "steps": f"{how} resized to {int(input_size[1])}x{int(input_size[0])} (width x height)"},
        "preprocessing": {"mode": preprocess, "inside_model": True},
        "clf_version": __version__,
        **extra,
    }


def write_labels(directory: Path, metadata: dict[str, Any]) -> Path:
    """Write ``labels.json`` atomically (temporary name, then rename)."""
    return write_json(Path(directory) / LABELS_FILE, metadata)


def read_labels(artifact: Path) -> dict[str, Any]:
    """The label record for an artifact file or bundle directory."""
    artifact = Path(artifact)
    folder = artifact if artifact.is_dir() else artifact.parent
    path = folder / LABELS_FILE
    if not path.is_file():
        raise ModelError(
            f"No {LABELS_FILE} next to {str(artifact)!r}; expected the bundle clf exports "
            f"(model file + {LABELS_FILE} with the class names in output order). Point to a "
            f"clf run's output folder, or write {LABELS_FILE} with 'class_names'."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = data["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("class_names is not a list of strings")
    except (ValueError, KeyError) as exc:
        raise ModelError(
            f"{str(path)!r} is not a valid clf label record ({exc}); expected JSON with a "
            f"'class_names' list. Re-export the model or fix the file."
        ) from None
    return data
