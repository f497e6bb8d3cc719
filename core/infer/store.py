"""A classifier's frozen feature extractor (``split`` from its head, to run in another
runtime), its converted copies and their checks in ``<cache>/runtimes/<key>/``. The key names
the network only (not data or runtime), so one conversion serves every dataset, later run
and ``clf predict`` on the run's model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from clf.files import cache_dir as clf_cache_dir, write_bytes, write_json
from clf.infer.runners import ONNX_HINT, OPENVINO_HINT, LiteRTRunner, OnnxRunner, OpenVINORunner, Runner, \
    RuntimeUnavailable, litert_interpreter_class
from clf.infer.convert import describe_failure, to_tflite, to_onnx

if TYPE_CHECKING:
    import keras

SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx"}
# Runtimes that run another's conversion (OpenVINO reads TFLite): nothing of their own is stored.
READS = {"openvino": "tflite"}
CHECKS_FILE = "checks.json"
# Versions the extractor key (feature cache too): bump when decoding or extraction changes features.
KEY_FORMAT = "clf-features/4"


def split(model: "keras.Model") -> "tuple[keras.Model, keras.Model] | None":
    """``(extractor, head)`` of a model ``clf.train.model.join`` built (reloaded too); None
    for any other model. A photo model (``clf.data.fitting.photo_model``) splits as its
    fixed-size classifier inside."""
    import keras

    from clf.data.fitting import fixed_model
    from clf.data.preprocessing import Preprocess

    model = fixed_model(model)
    layers = list(model.layers)
    if len(layers) != 4 or not isinstance(layers[1], Preprocess) or layers[3].name != "head" \
            or not all(isinstance(layer, keras.Model) for layer in layers[2:]):
        return None
    preprocess, backbone, head = layers[1:]
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    extractor = keras.Model(inputs, backbone(preprocess(inputs), training=False), name="feature_extractor")
    return extractor, head


def weights_fingerprint(model: "keras.Model") -> str:
    """Hash of a model's actual weight values: covers 'imagenet', a file, or seeded random."""
    h = hashlib.blake2b(digest_size=16)
    for w in model.weights:
        value = np.asarray(w.numpy())
        h.update(f"{w.path}:{value.dtype}:{value.shape};".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def extractor_parts(backbone: str | None, weights_of: "keras.Model", image_size: Sequence[int],
                    preprocess: str | None, tta: str = "none") -> dict[str, Any]:
    """What makes an extractor's network what it is. ``weights_of``: the backbone (or the
    extractor around it). ``tta`` is in the key only when on, so a run and ``clf predict``
    on its model name the same extractor."""
    parts = {"backbone": backbone, "weights": weights_fingerprint(weights_of),
             "image_size": [int(s) for s in image_size], "preprocess": preprocess}
    return parts if tta == "none" else {**parts, "tta": tta}


def extractor_key(parts: Mapping[str, Any]) -> str:
    text = json.dumps({"format": KEY_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def content_hash(content: bytes) -> str:
    return hashlib.blake2b(content, digest_size=16).hexdigest()


class RuntimeStore:
    """Converted extractors and checks for one key; ``root`` None: in memory (``--no-cache``)."""

    def __init__(self, root: str | Path | None, parts: Mapping[str, Any]) -> None:
        self.parts = dict(parts)
        self.dir = Path(root) / "runtimes" / extractor_key(self.parts) if root is not None else None

    def path(self, name: str) -> Path | None:
        name = READS.get(name, name)
        return self.dir / f"extractor{SUFFIXES[name]}" if self.dir is not None else None

    def load(self, name: str) -> bytes | None:
        path = self.path(name)
        try:
            return path.read_bytes() if path is not None else None
        except OSError:
            return None

    def save(self, name: str, content: bytes) -> None:
        path = self.path(name)
        if self.dir is None or path is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "key.json").exists():
            write_json(self.dir / "key.json", self.parts)
        write_bytes(path, content)

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


def runtime_store(cache_dir: str | Path | None, parts: Mapping[str, Any], *, enabled: bool = True) -> RuntimeStore:
    """The store for ``parts`` under ``cache_dir`` (None: clf's default feature cache
    folder); ``enabled=False`` keeps conversions in memory."""
    return RuntimeStore((cache_dir or clf_cache_dir("features")) if enabled else None, parts)


def converted(name: str, model: "keras.Model", store: RuntimeStore | None,
              convert: Callable[["keras.Model"], bytes]) -> bytes:
    """The stored conversion of ``model`` for runtime ``name``, converting (and storing) it once."""
    content = store.load(name) if store is not None else None
    if content is None:
        try:
            content = convert(model)
        except RuntimeUnavailable:
            raise
        except Exception as exc:  # an op the converter does not support, a plugin's layer
            raise RuntimeUnavailable(f"could not convert the backbone ({describe_failure(exc)})") from None
        if store is not None:
            store.save(name, content)
    return content


def open_tflite(model: "keras.Model", store: RuntimeStore | None) -> Runner:
    litert_interpreter_class()  # fail before converting when LiteRT is missing
    return LiteRTRunner(converted("tflite", model, store, to_tflite))


def open_onnx(model: "keras.Model", store: RuntimeStore | None) -> Runner:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise RuntimeUnavailable(f"onnxruntime is not installed ({ONNX_HINT})") from None
    return OnnxRunner(converted("onnx", model, store, to_onnx))


def open_openvino(model: "keras.Model", store: RuntimeStore | None) -> Runner:
    """The TFLite conversion (stored once for both) in OpenVINO."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise RuntimeUnavailable(f"OpenVINO is not installed ({OPENVINO_HINT})") from None
    return OpenVINORunner(converted(READS["openvino"], model, store, to_tflite))


# Runtime name -> ``open(model, store) -> Runner`` (raising RuntimeUnavailable); tests inject others.
OPENERS: dict[str, Callable[[Any, RuntimeStore | None], Runner]] = {"tflite": open_tflite, "onnx": open_onnx,
                                                                    "openvino": open_openvino}
