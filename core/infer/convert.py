"""A Keras model as a TFLite flatbuffer or as ONNX, for the exporters and ``--runtime``.
TFLite converts the traced forward frozen to constants, not a SavedModel (which writes and
re-reads the whole model for the same flatbuffer: benchmarks/export_formats.py).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from clf.config import QUANTIZE_MODES
from clf.errors import ExportError
from clf.infer.runners import ONNX_HINT, RuntimeUnavailable
from clf.logs import quiet_logs
from clf.infer.forward import forward_fn

if TYPE_CHECKING:
    import keras

ONNX_OPSET = 17


def to_tflite(model: "keras.Model", quantize: str = "none",
              representative_data: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """``model`` as a TFLite flatbuffer (dynamic batch, and height and width for a photo
    model), builtin ops only, input named ``image``. ``quantize``: ``none`` (float32),
    ``float16``, ``dynamic`` (int8 weights) or ``int8`` (uint8 in and out, calibrated on
    ``representative_data()``: raw model inputs)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"Unknown quantization {quantize!r}; expected one of {', '.join(QUANTIZE_MODES)}.")
    frozen = convert_variables_to_constants_v2(forward_fn(model).get_concrete_function())
    # No trackable_obj: with it the converter saves and reloads the model; its warning is silenced.
    with quiet_logs():
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative_data is None:
            raise ExportError(
                "--quantize int8 needs representative images to calibrate on; expected the "
                "run's training images. Use clf.run (it passes them) or pass "
                "representative_data=... to to_tflite()."
            )
        source = representative_data
        converter.representative_dataset = lambda: ([np.asarray(image, np.float32)] for image in source())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    with quiet_logs():
        return bytes(converter.convert())


def to_onnx(model: "keras.Model", opset: int = ONNX_OPSET) -> bytes:
    """``model`` as ONNX (input ``image``, float32 RGB 0-255, dynamic batch). Raises
    ``clf.infer.runners.RuntimeUnavailable`` when tf2onnx or onnx is missing."""
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailable(f"{exc.name} is not installed ({ONNX_HINT})") from None
    # Keras exports only a model that has been called.
    model(np.zeros((1, *[d or 32 for d in model.input_shape[1:]]), np.float32), training=False)
    with tempfile.TemporaryDirectory(prefix="clf-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        # tf2onnx logs every rewrite pass; the engine never prints.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            model.export(str(path), format="onnx", verbose=False, opset_version=opset)
        return path.read_bytes()


def describe_failure(exc: BaseException) -> str:
    """``TypeName: first line`` of a converter's exception, short enough for one message."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def stamp_onnx_metadata(content: bytes, key: str, value: str) -> bytes:
    """``content`` (an ONNX model) with ``metadata_props[key] = value``."""
    import onnx

    proto = onnx.load_from_string(content)
    for entry in list(proto.metadata_props):
        if entry.key == key:
            proto.metadata_props.remove(entry)
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
    return bytes(proto.SerializeToString())
