"""ONNX for onnxruntime: ``model.onnx`` (opset 17, via ``clf.to_onnx``), input ``image``
(float32 RGB 0-255), the label record in its ``metadata_props``; needs the ``onnx`` extra."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from clf import hookimpl, atomic_path, ExportError, ModelError, Predictor, OnnxRunner, RuntimeUnavailable, \
    stamp_onnx_metadata, to_onnx

INSTALL_HINT = "Install the ONNX extra: pip install 'clf[onnx]' (tf2onnx, onnx, onnxruntime)."


def export_onnx(model: Any, directory: Path, metadata: dict[str, Any]) -> list[Path]:
    """ONNX model (opset 17) for onnxruntime: model.onnx, with the class names inside."""
    try:
        content = to_onnx(model)
    except RuntimeUnavailable as exc:
        raise ExportError(f"The onnx exporter cannot run: {exc}. {INSTALL_HINT}") from None
    content = stamp_onnx_metadata(content, "clf_labels", json.dumps(metadata, sort_keys=True))
    path = Path(directory) / "model.onnx"
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return [path]


class OnnxPredictor(Predictor):
    runtime = "onnxruntime"

    def __init__(self, path: Path, labels: dict[str, Any]) -> None:
        super().__init__(path, labels)
        try:
            self._runner = OnnxRunner(path)
        except RuntimeUnavailable as exc:
            raise ModelError(f"Predicting with {str(path)!r} needs onnxruntime ({exc}). {INSTALL_HINT}") from None
        except Exception as exc:
            raise ModelError(
                f"Could not open ONNX model {str(path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Expected a .onnx file "
                f"exported by clf."
            ) from None

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        return self._runner.run(images)


@hookimpl
def register_exporters(register: Callable[..., None]) -> None:
    # requires: checked before a run trains, so a missing extra fails at once.
    register("onnx", export_onnx, load=OnnxPredictor, requires=("tf2onnx", "onnx", "onnxruntime"),
             install="pip install 'clf[onnx]'",
             description="ONNX (opset 17) for onnxruntime; needs the 'onnx' extra")
