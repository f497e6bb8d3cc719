"""TensorFlow Lite for phones and small boards: float32, float16, dynamic-range or full int8
(``--quantize``; uint8 in and out, for integer-only accelerators), through ``clf.to_tflite``.
The label record goes in the model's ``metadata`` as ``clf_labels`` (UTF-8 JSON) via LiteRT's
flatbuffer schema: ``tflite-support``'s writer pins a protobuf current TensorFlow rejects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from clf import hookimpl, atomic_path, ModelError, Predictor, LiteRTRunner, to_tflite

METADATA_NAME = "clf_labels"


def _schema() -> Any:
    """The TFLite flatbuffer schema module: LiteRT's, else the copy inside TensorFlow."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def embed_labels(flatbuffer: bytes, record: dict[str, Any], *, short_names: bool = False) -> bytes:
    """Add (or replace) the ``clf_labels`` metadata entry holding ``record`` as JSON.
    ``short_names``: internal tensors renamed ``t<index>`` (the converter's fused op names are
    about 5% of an int8 file); the inputs and outputs keep theirs."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    if short_names:
        for graph in model.subgraphs or []:
            keep = {int(i) for i in list(graph.inputs) + list(graph.outputs)}
            for i, tensor in enumerate(graph.tensors or []):
                if i not in keep:
                    tensor.name = f"t{i}".encode()
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


def read_embedded_labels(path: str | Path) -> dict[str, Any] | None:
    """The ``clf_labels`` record inside a .tflite file, or None when it has none."""
    model = _schema().Model.GetRootAs(Path(path).read_bytes(), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == METADATA_NAME:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(raw).decode("utf-8"))
    return None


def export_tflite(model: Any, directory: Path, metadata: dict[str, Any], *, quantize: str = "none",
                  representative_data: Callable[[], Iterable[np.ndarray]] | None = None,
                  quantize_check: Any = None) -> list[Path]:
    """TensorFlow Lite flatbuffer (float32, float16, dynamic-range or int8) with embedded labels.
    ``quantize_check`` (a ``clf.artifacts.quantize.QuantizeCheck``, from the export phase):
    int8 and dynamic go through its fallback ladder, and the variant kept is embedded."""
    path = Path(directory) / ("model.tflite" if quantize == "none" else f"model_{quantize}.tflite")
    extra: dict[str, Any] = {}
    if quantize_check is not None and quantize in ("int8", "dynamic"):
        flatbuffer = quantize_check.convert(model, quantize, representative_data)
        extra["quantization_variant"] = quantize_check.outcome.record()
    else:
        flatbuffer = to_tflite(model, quantize, representative_data)
    flatbuffer = embed_labels(flatbuffer, {**metadata, "quantization": quantize, **extra}, short_names=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    return [path]


class TFLitePredictor(Predictor):
    def __init__(self, path: Path, labels: dict[str, Any]) -> None:
        super().__init__(path, labels)
        try:
            embedded = read_embedded_labels(path) or {}
            # LiteRT; where it has no wheel (Windows), the deprecated tf.lite.Interpreter.
            self._runner = LiteRTRunner(path, allow_tensorflow=True)
        except Exception as exc:
            raise ModelError(
                f"Could not open TFLite model {str(path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Expected a .tflite "
                f"file exported by clf."
            ) from None
        self.runtime = self._runner.engine
        # Without clf metadata: integer input means full int8.
        self.quantization = embedded.get("quantization") or ("int8" if self._runner.integer_input else "none")

    def output_width(self) -> int:
        return int(self._runner.output_width() or 0)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        return self._runner.run(images)


@hookimpl
def register_exporters(register: Callable[..., None]) -> None:
    register("tflite", export_tflite, load=TFLitePredictor, aliases=("litert",),
             options=("quantize", "representative_data", "quantize_check"),
             description="TensorFlow Lite (--quantize none|float16|dynamic|int8), labels embedded")
