"""A Keras model as a TFLite flatbuffer or as ONNX, for the exporters and ``--runtime``.
TFLite converts the traced forward frozen to constants, not a SavedModel (which writes and
re-reads the whole model for the same flatbuffer: benchmarks/export_formats.py).
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from clf.config import QUANTIZE_MODES
from clf.errors import ExportError
from clf.infer.runners import ONNX_HINT, RuntimeUnavailable
from clf.logs import quiet_logs
from clf.infer.forward import forward_fn

if TYPE_CHECKING:
    import keras

ONNX_OPSET = 17


INT8_VARIANTS = ("full", "float-head", "selective", "16x8")  # how much of the graph is integer (docs/export.md)


def _converter(model: "keras.Model") -> Any:
    """A TFLite converter of ``model``'s traced forward frozen to constants."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(forward_fn(model).get_concrete_function())
    # No trackable_obj: with it the converter saves and reloads the model; its warning is silenced.
    with quiet_logs():
        return tf.lite.TFLiteConverter.from_concrete_functions([frozen])


def _calibration(converter: Any, representative_data: Callable[[], Iterable[np.ndarray]] | None) -> None:
    import tensorflow as tf

    if representative_data is None:
        raise ExportError(
            "--quantize int8 needs representative images to calibrate on; expected the "
            "run's training images. Use clf.run (it passes them) or pass "
            "representative_data=... to to_tflite()."
        )
    source = representative_data
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.asarray(image, np.float32)] for image in source())


def to_tflite(model: "keras.Model", quantize: str = "none",
              representative_data: Callable[[], Iterable[np.ndarray]] | None = None,
              variant: str = "full") -> bytes:
    """``model`` as a TFLite flatbuffer (dynamic batch, and height and width for a photo
    model), builtin ops only, input named ``image``. ``quantize``: ``none`` (float32),
    ``float16``, ``dynamic`` (int8 weights) or ``int8`` (calibrated on
    ``representative_data()``: raw model inputs). ``variant`` (int8 only): ``full`` (uint8
    in and out, every op integer), ``float-head`` (uint8 in, the pooling and head in float,
    float32 out), ``selective`` (``selective_tflite``: float32 in and out) or ``16x8`` (int16 activations, int8 weights, float32 in and out)."""
    import tensorflow as tf

    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"Unknown quantization {quantize!r}; expected one of {', '.join(QUANTIZE_MODES)}.")
    if quantize == "int8" and variant == "selective":
        return selective_tflite(model, representative_data)
    if quantize == "int8" and variant != "16x8":
        return quantize_calibrated(calibrate(model, representative_data), float_head=variant == "float-head")
    converter = _converter(model)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":  # 16x8; ops without an int16 kernel stay float
        _calibration(converter, representative_data)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with quiet_logs():
        return bytes(converter.convert())


def calibrate(model: "keras.Model", representative_data: Callable[[], Iterable[np.ndarray]] | None) -> bytes:
    """``model`` as a float flatbuffer carrying activation ranges measured on
    ``representative_data()``: the slow half of int8, shared by its variants."""
    converter = _converter(model)
    _calibration(converter, representative_data)
    converter._experimental_calibrate_only = True  # TFLite's own route to selective quantization
    with quiet_logs():
        return bytes(converter.convert())


def quantize_calibrated(calibrated: bytes, *, float_head: bool = False) -> bytes:
    """A ``calibrate`` result as int8 (per-channel weights): uint8 in; uint8 out, or with
    ``float_head`` the ops from the head's input on (pooling, head, known score) in float and
    float32 out."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    nodes = head_nodes(calibrated) if float_head else None
    with quiet_logs():
        return bytes(tflite_convert.mlir_quantize(
            calibrated, input_data_type=tf.uint8,  # as TFLiteConverter.convert calls it
            output_data_type=tf.float32 if float_head else tf.uint8, denylisted_nodes=nodes))


SELECTIVE_LAYERS = 20  # backbone ops the debugger ranks worst, kept float by int8's "selective" variant
DEBUG_IMAGES = 50  # calibration images the quantization debugger compares float and int8 layers on


def selective_tflite(model: "keras.Model", representative_data: Callable[[], Iterable[np.ndarray]] | None,
                     layers: int = SELECTIVE_LAYERS) -> bytes:
    """int8 with the pooling, head and known score in float, and the ``layers`` ops whose int8
    output differs most from float (TFLite's quantization debugger: RMSE over the quantization
    scale, on ``DEBUG_IMAGES`` calibration images) in float too; float32 in and out."""
    import itertools

    import tensorflow as tf

    converter = _converter(model)
    _calibration(converter, representative_data)
    assert representative_data is not None  # _calibration raised otherwise
    source = representative_data

    def debug_data() -> Iterable[list[np.ndarray]]:
        return ([np.asarray(image, np.float32)] for image in itertools.islice(source(), DEBUG_IMAGES))

    with quiet_logs():
        head = head_nodes(calibrate(model, representative_data))
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_data)
        debugger.run()
        buffer = io.StringIO()
        debugger.layer_statistics_dump(buffer)
    buffer.seek(0)
    ranked = sorted(((float(r["mean_squared_error"]) ** 0.5 / float(r["scale"]), r["tensor_name"])
                     for r in csv.DictReader(buffer) if float(r["scale"] or 0) > 0 and r["tensor_name"] not in head),
                    reverse=True)
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=head + [name for _, name in ranked[:layers]])
    with quiet_logs():
        return bytes(tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=debug_data, debug_options=options).get_nondebug_quantized_model())


def head_nodes(flatbuffer: bytes) -> list[str]:
    """The output tensor names of the ops that feed the ``head`` model and of every op after
    them (the pooling, the head, the known score and the output concatenation)."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0).subgraphs[0]
    names = [t.name.decode() if isinstance(t.name, bytes) else str(t.name) for t in graph.tensors]
    ops = list(graph.operators or [])
    head = [i for i, op in enumerate(ops) if any("/head" in names[t] for t in op.outputs)]
    if not head:
        raise ExportError("The model has no 'head' layer to keep in float; expected a clf classifier.")
    produced = {t: i for i, op in enumerate(ops) for t in op.outputs}
    kept = {produced[t] for t in ops[head[0]].inputs if t in produced}
    for i, op in enumerate(ops):  # ops come in execution order: one pass finds every later consumer
        if i in head or any(produced.get(t) in kept for t in op.inputs):
            kept.add(i)
    return [names[ops[i].outputs[0]] for i in sorted(kept)]


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
