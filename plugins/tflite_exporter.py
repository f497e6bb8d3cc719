"""TensorFlow Lite for phones and small boards: float32, float16, dynamic-range or full
int8 (``--quantize``), with the label record embedded in the model itself.

Conversion goes through a frozen concrete function (variables folded to constants) rather
than a SavedModel: on this TF (2.21) the SavedModel route writes and re-reads the whole
model for the same flatbuffer (the README's export section gives the measured cost). Full
int8 calibrates on raw training images (``representative_data``) and takes uint8 pixels in
and gives uint8 scores out, so it also runs on integer-only accelerators.

Labels: the TFLite Support metadata writer (``tflite-support``) is unmaintained and pins
protobuf 3.20, which cannot coexist with TF 2.21 (protobuf >= 6.31). So the label record
goes into the model's own ``metadata`` table as a ``clf_labels`` entry (UTF-8 JSON), using
the flatbuffer schema LiteRT ships; ``read_embedded_labels`` reads it back. labels.json
still sits beside it, as for every artifact.

Reading: verification and ``clf predict`` run the file in LiteRT (``ai-edge-litert``, in the
``cpu``, ``gpu`` and ``tflite`` extras), on every core; ``tf.lite.Interpreter`` is deprecated
and due for deletion from TensorFlow, and is used only where LiteRT has no wheel (Windows).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from clf import hookimpl, atomic_path, quiet_logs, ExportError, ModelError, Predictor, QUANTIZE_MODES

METADATA_NAME = "clf_labels"


def artifact_name(quantize: str) -> str:
    return "model.tflite" if quantize == "none" else f"model_{quantize}.tflite"


def convert(model, quantize: str = "none",
            representative_data: Callable[[], Iterator[np.ndarray]] | None = None) -> bytes:
    """The model as a TFLite flatbuffer with a dynamic batch dimension."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"Unknown quantization {quantize!r}; expected one of {', '.join(QUANTIZE_MODES)}.")
    shape = (None, *model.input_shape[1:])
    fn = tf.function(lambda image: model(image, training=False),
                     input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    with quiet_logs():  # "consider providing the trackable_obj argument": the frozen route is deliberate
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
                "representative_data=... to convert()."
            )

        def calibration():
            for image in representative_data():
                yield [np.asarray(image, np.float32)]

        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    with quiet_logs():  # the converter's and the calibration's notes
        return converter.convert()


def _schema():
    """The TFLite flatbuffer schema module: LiteRT's, else the copy inside TensorFlow."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def embed_labels(flatbuffer: bytes, record: dict) -> bytes:
    """Add (or replace) the ``clf_labels`` metadata entry holding ``record`` as JSON."""
    import flatbuffers

    schema = _schema()

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    payload = np.frombuffer(json.dumps(record, sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers = model.buffers or []
    model.buffers.append(schema.BufferT())
    model.buffers[-1].data = payload
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_embedded_labels(path_or_bytes) -> dict | None:
    """The ``clf_labels`` record inside a .tflite file, or None when it has none."""
    schema = _schema()
    data = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else Path(path_or_bytes).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == METADATA_NAME:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(raw).decode("utf-8"))
    return None


def export_tflite(model, directory: Path, metadata: dict, *, quantize: str = "none",
                  representative_data=None) -> list[Path]:
    """TensorFlow Lite flatbuffer (float32, float16, dynamic-range or int8) with embedded labels."""
    path = Path(directory) / artifact_name(quantize)
    flatbuffer = convert(model, quantize, representative_data)
    flatbuffer = embed_labels(flatbuffer, {**metadata, "quantization": quantize})
    with atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    return [path]


def _interpreter(path: Path):
    """LiteRT's interpreter on every core (``ai-edge-litert``); where LiteRT has no wheel,
    ``tf.lite.Interpreter`` (deprecated, still in TF 2.21). Quietly: its deprecation notice and
    the XNNPACK delegate's INFO line say nothing a user can act on."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter, runtime = tf.lite.Interpreter, "tf.lite"
    else:
        runtime = "litert"
    with quiet_logs():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()  # where the default delegate is applied (and says so)
    return interpreter, runtime


class TFLitePredictor(Predictor):
    def __init__(self, path: Path, labels: dict):
        super().__init__(path, labels)
        try:
            embedded = read_embedded_labels(path) or {}
            self._it, self.runtime = _interpreter(path)
        except Exception as exc:
            raise ModelError(
                f"Could not open TFLite model {str(path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Expected a .tflite "
                f"file exported by clf."
            ) from None
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self.quantization = embedded.get("quantization") or self._guess_quantization()
        self._batch = None

    def output_width(self) -> int:
        return int(self._out["shape"][-1])

    def _guess_quantization(self) -> str:
        """For a .tflite without clf metadata: integer input means full int8."""
        if self._in["dtype"] in (np.uint8, np.int8):
            return "int8"
        return "none"

    def predict_batch(self, images):
        images = np.asarray(images, np.float32)
        if self._batch != len(images):  # the batch dimension is dynamic: resize per size
            self._it.resize_tensor_input(self._in["index"], list(images.shape))
            self._it.allocate_tensors()
            self._batch = len(images)
        x = images
        if self._in["dtype"] in (np.uint8, np.int8):
            scale, zero = self._in["quantization"]
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.round(images / scale + zero), info.min, info.max)
        self._it.set_tensor(self._in["index"], x.astype(self._in["dtype"]))
        self._it.invoke()
        y = self._it.get_tensor(self._out["index"])
        if self._out["dtype"] in (np.uint8, np.int8):
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.asarray(y, np.float32)


@hookimpl
def register_exporters(register):
    register("tflite", export_tflite, load=TFLitePredictor, aliases=("litert",),
             options=("quantize", "representative_data"),
             description="TensorFlow Lite (--quantize none|float16|dynamic|int8), labels embedded")
