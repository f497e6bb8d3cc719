"""ONNX for onnxruntime and the tools around it: ``model.onnx`` (opset 17), input ``image``
(float32 RGB 0-255, dynamic batch), output probabilities.

Written by Keras' own ``model.export(format="onnx")``. With the TensorFlow backend that
is tf2onnx underneath, but Keras traces the inference function itself and patches
tf2onnx 1.17 for NumPy 2 (tf2onnx still uses ``np.object``/``np.cast``, gone in NumPy 2,
in its constant folding), so it is the route that works with the pinned TF 2.21 /
Keras 3.15 / NumPy 2 here; calling tf2onnx directly works only while no such fold is hit.
Needs the ``onnx`` extra: ``pip install 'clf[onnx]'`` (tf2onnx, onnx, onnxruntime),
imported only when this exporter or its loader runs.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from clf import hookimpl, atomic_path, ExportError, ModelError, Predictor

OPSET = 17
INSTALL_HINT = "Install the ONNX extra: pip install 'clf[onnx]' (tf2onnx, onnx, onnxruntime)."


def export_onnx(model, directory: Path, metadata: dict) -> list[Path]:
    """ONNX model (opset 17) for onnxruntime: model.onnx."""
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"The onnx exporter needs {exc.name!r}, which is not installed. {INSTALL_HINT}") from None
    path = Path(directory) / "model.onnx"
    with atomic_path(path) as tmp:
        # tf2onnx logs every rewrite pass to stdout/stderr; the engine never prints.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            model.export(str(tmp), format="onnx", verbose=False, opset_version=OPSET)
        _stamp_labels(tmp, metadata)
    return [path]


def _stamp_labels(path: Path, metadata: dict) -> None:
    """Class names in the model's own metadata_props, so the .onnx alone knows its labels."""
    import json

    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "clf_labels", json.dumps(metadata, sort_keys=True)
    onnx.save(proto, str(path))


class OnnxPredictor(Predictor):
    runtime = "onnxruntime"

    def __init__(self, path: Path, labels: dict):
        super().__init__(path, labels)
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(f"Predicting with {str(path)!r} needs onnxruntime. {INSTALL_HINT}") from None
        try:
            self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(
                f"Could not open ONNX model {str(path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Expected a .onnx file "
                f"exported by clf."
            ) from None
        self._input = self._session.get_inputs()[0].name

    def predict_batch(self, images):
        return np.asarray(self._session.run(None, {self._input: np.asarray(images, np.float32)})[0])


@hookimpl
def register_exporters(register):
    # requires: checked before a run trains, so a missing extra fails at once.
    register("onnx", export_onnx, load=OnnxPredictor, requires=("tf2onnx", "onnx", "onnxruntime"),
             install="pip install 'clf[onnx]'",
             description="ONNX (opset 17) for onnxruntime; needs the 'onnx' extra")
