"""Each runtime behind the same ``run(batch) -> outputs``: TensorFlow's traced forward, LiteRT
and onnxruntime, on the cores this process may use; float32 in and out (int8 TFLite is
quantised and dequantised here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clf.logs import quiet_logs
from clf.infer.forward import predict

if TYPE_CHECKING:
    import keras

TFLITE_HINT = "pip install 'clf[tflite]' (the ai-edge-litert package)"
ONNX_HINT = "pip install 'clf[onnx]' (tf2onnx, onnx, onnxruntime)"


class RuntimeUnavailable(Exception):
    """A runtime that cannot run here; the text says why. Callers turn it into a fallback
    note or their own ClfError."""


def cpu_threads() -> int:
    """The cores this process may use (a container's affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Runner:
    """``run(batch) -> outputs``; ``name`` is the runtime (``tensorflow``, ``tflite``,
    ``onnx``) and ``engine`` what actually runs it (``litert``, ``tf.lite``, ...)."""

    name = "unknown"
    engine = "unknown"

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def output_width(self) -> int | None:
        """The last dimension of the output when the runtime knows it without running."""
        return None


class TensorFlowRunner(Runner):
    """A Keras model through its traced forward (``clf.infer.forward.predict``)."""

    name = engine = "tensorflow"

    def __init__(self, model: "keras.Model") -> None:
        self.model = model

    def run(self, batch: np.ndarray) -> np.ndarray:
        return predict(self.model, batch)

    def output_width(self) -> int | None:
        return int(self.model.output_shape[-1])


def litert_interpreter_class(allow_tensorflow: bool = False) -> tuple[Any, str]:
    """``(Interpreter class, engine name)``: LiteRT's, or with ``allow_tensorflow`` (LiteRT
    has no Windows wheel) the deprecated ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        if not allow_tensorflow:
            raise RuntimeUnavailable(f"LiteRT is not installed ({TFLITE_HINT})") from None
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite"
    return Interpreter, "litert"


class LiteRTRunner(Runner):
    """A TFLite flatbuffer (bytes or a file) in LiteRT's interpreter, on every core."""

    name = "tflite"

    def __init__(self, model: bytes | str | Path, threads: int | None = None, *, allow_tensorflow: bool = False) -> None:
        interpreter, self.engine = litert_interpreter_class(allow_tensorflow)
        source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else \
            {"model_path": str(model)}
        # Quietly: the deprecation and XNNPACK notices say nothing a user can act on.
        with quiet_logs():
            self._it = interpreter(**source, num_threads=threads or cpu_threads())
            self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self._shape: tuple[int, ...] | None = None

    @property
    def integer_input(self) -> bool:
        return self._in["dtype"] in (np.uint8, np.int8)

    def output_width(self) -> int | None:
        return int(self._out["shape"][-1])

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, np.float32)
        if self._shape != x.shape:
            self._it.resize_tensor_input(self._in["index"], list(x.shape))
            self._it.allocate_tensors()
            self._shape = x.shape
        if self.integer_input:
            scale, zero = self._in["quantization"]
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self._it.set_tensor(self._in["index"], x.astype(self._in["dtype"]))
        self._it.invoke()
        y = self._it.get_tensor(self._out["index"])
        if self._out["dtype"] in (np.uint8, np.int8):
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.asarray(y, np.float32)


class OnnxRunner(Runner):
    """An ONNX model (bytes or a file) in onnxruntime's CPU provider, one thread per core."""

    name = "onnx"
    engine = "onnxruntime"

    def __init__(self, model: bytes | str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailable(f"onnxruntime is not installed ({ONNX_HINT})") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
        self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        if len(inputs) != 1:  # tf2onnx turned constants into inputs (efficientnet's Normalization)
            raise RuntimeUnavailable(f"the ONNX conversion has {len(inputs)} inputs instead of the image alone "
                                     f"({', '.join(i.name for i in inputs[:3])})")
        self._input = inputs[0].name
        width = self._session.get_outputs()[0].shape[-1]
        self._width = width if isinstance(width, int) else None

    def output_width(self) -> int | None:
        return self._width

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input: np.asarray(batch, np.float32)})[0], np.float32)


OPENVINO_HINT = "pip install 'clf[openvino]'"


class OpenVINORunner(Runner):
    """An ONNX or TFLite model (bytes or a file; OpenVINO reads both) compiled for OpenVINO's CPU
    plugin in float32: its default on CPUs with bf16 units is bfloat16, whose answers drift far
    beyond clf's tolerances. Latency mode on every core (benchmarks/predict_cold.py times it)."""

    name = engine = "openvino"

    def __init__(self, model: bytes | str | Path, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeUnavailable(f"OpenVINO is not installed ({OPENVINO_HINT})") from None
        core = ov.Core()
        with quiet_logs():
            network = _read_openvino(core, model)
            if len(network.inputs) != 1:
                raise RuntimeUnavailable(f"the model has {len(network.inputs)} inputs instead of the image alone")
            self._compiled = core.compile_model(network, "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": threads or cpu_threads()})
        self._request = self._compiled.create_infer_request()
        width = network.outputs[0].get_partial_shape()[-1]
        self._width = width.get_length() if width.is_static else None

    def output_width(self) -> int | None:
        return self._width

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer([np.ascontiguousarray(batch, np.float32)])
        return np.array(result[self._compiled.output(0)], np.float32)


def _read_openvino(core: Any, model: bytes | str | Path) -> Any:
    """An OpenVINO model from a file or bytes: ONNX bytes are read as they are, a TFLite flatbuffer
    (``TFL3`` at byte 4) only from a file, so through a temporary one."""
    if not isinstance(model, (bytes, bytearray)):
        return core.read_model(str(model))
    if bytes(model[4:8]) != b"TFL3":
        return core.read_model(bytes(model))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="clf-openvino-") as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(bytes(model))
        return core.read_model(str(path))
