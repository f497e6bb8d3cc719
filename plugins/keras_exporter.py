"""Keras' native format: ``model.keras`` (a zip of config + weights), the one Keras 3
recommends; reloads with ``keras.models.load_model`` wherever ``clf`` is importable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from clf import hookimpl, atomic_path, KerasPredictor


def export_keras(model: Any, directory: Path, metadata: dict[str, Any]) -> list[Path]:
    """Keras v3 format: model.keras."""
    path = Path(directory) / "model.keras"
    # Same suffix (Keras picks the format by it), then rename: a crash leaves no valid-looking file.
    with atomic_path(path) as tmp:
        model.save(str(tmp))
    return [path]


@hookimpl
def register_exporters(register: Callable[..., None]) -> None:
    register("keras", export_keras, load=KerasPredictor,
             description="Keras v3 native format: model.keras (Keras' recommended format)")
