"""The default exporter: ``model.h5`` plus the weights. Keras calls HDF5 legacy, but the
tutorial's readers load it; ``Preprocess`` is registered, so it reloads wherever ``clf`` is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from clf import hookimpl, atomic_path, quiet_logs, KerasPredictor, h5_holds


def export_h5(model: Any, directory: Path, metadata: dict[str, Any]) -> list[Path]:
    """Keras HDF5 model (model.h5) and weights (model.weights.h5)."""
    directory = Path(directory)
    model_path, weights_path = directory / "model.h5", directory / "model.weights.h5"
    with quiet_logs():  # Keras' "HDF5 is legacy" warning: known, intended
        for path, save in ((model_path, model.save), (weights_path, model.save_weights)):
            # Same suffix (Keras picks the format by it), then rename: no valid-looking half file.
            with atomic_path(path) as tmp:
                save(str(tmp))
    return [model_path, weights_path]


@hookimpl
def register_exporters(register: Callable[..., None]) -> None:
    # holds: the file proven to be the in-memory model, weight by weight, spares reloading it.
    register("h5", export_h5, load=KerasPredictor, holds=h5_holds,
             description="Keras HDF5: model.h5 + model.weights.h5 (the tutorial's format)")
