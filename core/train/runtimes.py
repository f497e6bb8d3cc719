"""The runtimes that can run the frozen feature extractor (Preprocess + backbone), each a
``forward(batch) -> features`` over float32 RGB 0-255 images, and the converted copies of
the extractor they read, stored on disk beside the feature cache.

TensorFlow's own forward pass is 2-4x slower on a CPU than LiteRT (TFLite + XNNPACK) for
the small, depthwise-separable backbones people pick for CPUs (mobilenet_v2_035 on 2 cores:
~250 img/s against ~900-1000, features within 1e-5). Which one runs is decided by
``clf.train.runtime_choice``; this module only opens and converts.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from clf.files import write_bytes, write_json
from clf.logs import quiet_logs

# Conversion targets: runtime name -> file suffix of the converted extractor.
SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx"}
CHECKS_FILE = "checks.json"
TFLITE_HINT = "pip install 'clf[tflite]' (the ai-edge-litert package)"
ONNX_HINT = "pip install 'clf[onnx]' (tf2onnx, onnx, onnxruntime)"


class RuntimeUnavailable(Exception):
    """A runtime that cannot run here (not installed, cannot convert or open the model);
    the text says why. The chooser turns it into a fallback note, never into a failed run."""


def cpu_threads() -> int:
    """The cores this process may use (a container's affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Runtime:
    """``forward(batch) -> features``: float32 ``[n, h, w, 3]`` RGB 0-255 in, float32 out."""

    name = "unknown"

    def forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TensorFlowRuntime(Runtime):
    name = "tensorflow"

    def __init__(self, model):
        from clf.train.forward import forward_fn

        self._fn = forward_fn(model)

    def forward(self, batch):
        return np.asarray(self._fn(np.asarray(batch, np.float32)), np.float32)


class LiteRTRuntime(Runtime):
    """A TFLite flatbuffer in LiteRT's interpreter (XNNPACK on every core), resized per batch size."""

    name = "tflite"

    def __init__(self, content: bytes, threads: int | None = None):
        Interpreter = litert_interpreter_class()
        self._it = Interpreter(model_content=bytes(content), num_threads=threads or cpu_threads())
        with quiet_logs():  # the first allocation applies XNNPACK, whose INFO line reached notebooks
            self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self._shape: tuple[int, ...] | None = None

    def forward(self, batch):
        batch = np.ascontiguousarray(batch, np.float32)
        if self._shape != batch.shape:  # the batch dimension is dynamic: re-plan per shape
            self._it.resize_tensor_input(self._in["index"], list(batch.shape))
            self._it.allocate_tensors()
            self._shape = batch.shape
        self._it.set_tensor(self._in["index"], batch)
        self._it.invoke()
        return np.asarray(self._it.get_tensor(self._out["index"]), np.float32)


class OnnxRuntime(Runtime):
    """An ONNX model in onnxruntime's CPU provider, one thread per core."""

    name = "onnx"

    def __init__(self, content: bytes, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailable(f"onnxruntime is not installed ({ONNX_HINT})") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(bytes(content), options, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        if len(inputs) != 1:  # tf2onnx turned constants into inputs (efficientnet's Normalization)
            raise RuntimeUnavailable(f"the ONNX conversion has {len(inputs)} inputs instead of the image alone "
                                     f"({', '.join(i.name for i in inputs[:3])})")
        self._input = inputs[0].name

    def forward(self, batch):
        return np.asarray(self._session.run(None, {self._input: np.asarray(batch, np.float32)})[0], np.float32)


def litert_interpreter_class():
    """LiteRT's ``Interpreter`` (``tf.lite.Interpreter`` is deprecated and due for deletion)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RuntimeUnavailable(f"LiteRT is not installed ({TFLITE_HINT})") from None
    return Interpreter


def tflite_flatbuffer(model) -> bytes:
    """``model`` as a float32 TFLite flatbuffer with a dynamic batch dimension, from the
    traced forward function TensorFlow already runs (no second trace), variables frozen."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from clf.train.forward import forward_fn

    frozen = convert_variables_to_constants_v2(forward_fn(model).get_concrete_function())
    # Without ``trackable_obj`` (the model): with it the converter saves and reloads the
    # whole model first, 10-30x slower. It logs that choice as a warning through absl.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    finally:
        absl.setLevel(level)


def onnx_bytes(model) -> bytes:
    """``model`` as ONNX (opset 17), the way the onnx exporter writes it (Keras' own export)."""
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailable(f"{exc.name} is not installed ({ONNX_HINT})") from None
    # Keras exports only a model that has been called (a stored TensorFlow check calls it;
    # a fresh conversion for a stored decision may come first).
    model(np.zeros((1, *model.input_shape[1:]), np.float32), training=False)
    with tempfile.TemporaryDirectory(prefix="clf-onnx-") as tmp:
        path = Path(tmp) / "extractor.onnx"
        # tf2onnx logs every rewrite pass; the engine never prints.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            model.export(str(path), format="onnx", verbose=False, opset_version=17)
        return path.read_bytes()


class RuntimeStore:
    """Converted extractors and their agreement checks, in ``<root>/runtimes/<key>/``.

    ``key`` is the feature cache's extractor key without what does not change the network
    (loader, crop, runtime), so a model converted once serves every dataset and
    ``clf predict`` on the run's model. ``root`` None keeps everything in memory.
    """

    def __init__(self, root: str | Path | None, parts: Mapping[str, Any]):
        from clf.train.feature_cache import extractor_key

        self.parts = dict(parts)
        self.dir = Path(root) / "runtimes" / extractor_key(self.parts) if root is not None else None

    def path(self, name: str) -> Path | None:
        return self.dir / f"extractor{SUFFIXES[name]}" if self.dir is not None else None

    def load(self, name: str) -> bytes | None:
        path = self.path(name)
        try:
            return path.read_bytes() if path is not None else None
        except OSError:
            return None

    def save(self, name: str, content: bytes) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "key.json").exists():
            write_json(self.dir / "key.json", self.parts)
        write_bytes(self.path(name), content)

    def read_checks(self) -> dict[str, Any]:
        if self.dir is None:
            return {}
        try:
            data = json.loads((self.dir / CHECKS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_checks(self, checks: dict[str, Any]) -> None:
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json(self.dir / CHECKS_FILE, checks)


def content_hash(content: bytes) -> str:
    return hashlib.blake2b(content, digest_size=16).hexdigest()


def converted(name: str, model, store: RuntimeStore | None, convert: Callable[[Any], bytes]) -> bytes:
    """The stored conversion of ``model`` for runtime ``name``, converting (and storing) it once."""
    content = store.load(name) if store is not None else None
    if content is None:
        try:
            content = convert(model)
        except RuntimeUnavailable:
            raise
        except Exception as exc:  # an op the converter does not support, a plugin's layer
            raise RuntimeUnavailable(f"could not convert the backbone ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
        if store is not None:
            store.save(name, content)
    return content


def open_tflite(model, store: RuntimeStore | None) -> LiteRTRuntime:
    litert_interpreter_class()  # fail fast, before converting, when LiteRT is missing
    return LiteRTRuntime(converted("tflite", model, store, tflite_flatbuffer))


def open_onnx(model, store: RuntimeStore | None) -> OnnxRuntime:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise RuntimeUnavailable(f"onnxruntime is not installed ({ONNX_HINT})") from None
    return OnnxRuntime(converted("onnx", model, store, onnx_bytes))


# Runtime name -> ``open(model, store) -> Runtime`` (raising RuntimeUnavailable). The chooser
# takes another mapping in tests, to inject a runtime that disagrees with TensorFlow.
OPENERS: dict[str, Callable[[Any, RuntimeStore | None], Runtime]] = {
    "tflite": open_tflite,
    "onnx": open_onnx,
}
