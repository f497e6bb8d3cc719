"""Reopen an exported artifact and predict class probabilities on image files, in batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from clf.data.images import is_image_file
from clf.errors import DataError, ModelError
from clf.artifacts.labels import LABELS_FILE, read_labels


class Predictor:
    """An artifact opened in its own runtime. Subclasses implement ``predict_batch``.

    ``runtime`` names what runs it (``keras``, ``tf.saved_model``, ``tflite``,
    ``onnxruntime``); ``quantization`` is ``"none"`` for float artifacts, which decides how
    verification judges it (exact within tolerance, or top-1 agreement).
    """

    runtime = "unknown"
    quantization = "none"

    def __init__(self, path: Path, labels: dict):
        self.path = Path(path)
        self.labels = labels
        self.notes: list[str] = []  # what the user should know (a runtime fallback taken)
        self.class_names: list[str] = list(labels["class_names"])
        self.input_size: tuple[int, int] = tuple(labels["input_size"])  # type: ignore[assignment]

    @property
    def decode_size(self):
        """The input size with the centre crop the model was trained with (none recorded:
        bundles from before crops existed resized the whole photo)."""
        from clf.data.images import ImageSize

        return ImageSize(self.input_size, float(self.labels.get("resize", {}).get("center_crop", 0.0)))

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """``images``: float32 RGB 0-255 ``[n, h, w, 3]`` -> probabilities ``[n, classes]``."""
        raise NotImplementedError


class KerasPredictor(Predictor):
    runtime = "keras"

    def __init__(self, path: Path, labels: dict):
        super().__init__(path, labels)
        import keras

        from clf.data import preprocessing  # noqa: F401  registers the Preprocess layer

        try:
            self.model = keras.models.load_model(str(path), compile=False)
        except Exception as exc:
            raise ModelError(
                f"Could not load Keras model {str(path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}. Expected a model saved by clf. If it uses "
                f"a plugin's backbone or preprocessing, pass that --plugin too."
            ) from None

        self._backbone = None  # clf.train.runtime_choice.BackboneRuntime, with use_runtime
        self._head = None

    def use_runtime(self, requested: str, cache_dir: str | Path | None = None) -> None:
        """Run the frozen backbone in ``requested`` (``auto``: the runtime the training run chose
        and checked for this backbone, when its converted copy is in the cache; else TensorFlow),
        the head in Keras. Models that clf did not assemble run whole in Keras."""
        from clf.train.feature_cache import default_cache_dir, weights_fingerprint
        from clf.train.model import split
        from clf.train.runtime_choice import BackboneRuntime
        from clf.train.runtimes import RuntimeStore

        if requested == "tensorflow":
            self._backbone = None
            return
        parts = split(self.model)
        if parts is None:
            if requested != "auto":
                self.notes.append(f"--runtime {requested} needs a model clf assembled (preprocess, backbone, "
                                  f"head); {self.path.name} runs whole in TensorFlow.")
            return
        extractor, self._head = parts
        key = {"backbone": self.labels.get("backbone"), "weights": weights_fingerprint(extractor),
               "image_size": list(self.input_size),
               "preprocess": (self.labels.get("preprocessing") or {}).get("mode")}
        store = RuntimeStore(cache_dir or default_cache_dir(), key)
        backbone = BackboneRuntime(requested, extractor, store, no_conversion=(
            "auto converts only in training runs; pass --runtime tflite or onnx" if requested == "auto" else None))
        self.notes.extend(backbone.notes)
        # Decided on TensorFlow already (auto with no converted copy): the whole model runs as one.
        self._backbone = None if backbone.name == "tensorflow" else backbone

    def predict_batch(self, images):
        from clf.train.forward import predict

        if self._backbone is None:
            return predict(self.model, images)
        known = len(self._backbone.notes)
        features = self._backbone.forward(images)
        self.notes.extend(self._backbone.notes[known:])
        if self._backbone.name != "tensorflow":
            self.runtime = f"keras, backbone in {self._backbone.name}"
        return predict(self._head, features)


def resolve_artifact(artifact: str | Path) -> tuple[Path, str | None, list[str]]:
    """``(bundle folder, exporter name, files)`` for a bundle folder or an artifact in one.

    A folder holding ``labels.json`` is a bundle (its first listed artifact is used); any
    other path, a file or an artifact folder such as ``saved_model/``, must be listed in
    the ``labels.json`` beside it.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ModelError(
            f"Model {str(artifact)!r} does not exist; expected a clf run folder or a model "
            f"file exported by clf. Check the path."
        )
    is_bundle = artifact.is_dir() and (artifact / LABELS_FILE).is_file()
    folder = artifact if is_bundle else artifact.parent
    labels = read_labels(folder)
    exports: dict[str, list[str]] = labels.get("artifacts", {})
    if is_bundle:
        if not exports:
            raise ModelError(f"{str(artifact)!r} lists no artifacts in labels.json; re-export the model.")
        name, files = next(iter(exports.items()))
        return folder, name, files
    matches = [(n, f) for n, f in exports.items() if f and f[0] == artifact.name]
    if not matches:
        hint = (" It was renamed after failing its round-trip check; re-export it."
                if artifact.name.endswith(".failed") else "")
        raise ModelError(
            f"{str(artifact)!r} is not an artifact listed in {str(folder / LABELS_FILE)!r} "
            f"(listed: {', '.join(f[0] for f in exports.values() if f) or 'none'}). Pass one "
            f"of those or the folder.{hint}"
        )
    name, files = matches[0]
    return folder, name, files


def load_predictor(artifact: str | Path, host=None, runtime: str = "tensorflow") -> Predictor:
    """Open a clf artifact (a bundle folder, or a model file or folder inside one).

    ``runtime`` (auto, tensorflow, tflite, onnx): what runs the frozen backbone of a Keras
    model (clf.train.runtime_choice); other artifacts run in their own runtime."""
    from clf.config import RUNTIMES, check_name
    from clf.host.manager import get_host

    runtime = check_name("runtime", runtime, RUNTIMES)
    folder, exporter_name, files = resolve_artifact(artifact)
    labels = read_labels(folder)
    exporter = (host or get_host()).exporters.get(exporter_name)
    if exporter.load is None:
        raise ModelError(
            f"Exporter {exporter_name!r} (plugin {exporter.plugin!r}) cannot reopen its "
            f"artifacts for prediction; expected it to register a 'load' function. Use another "
            f"export format for predict."
        )
    predictor = exporter.load(folder / files[0], labels)
    if not hasattr(predictor, "notes"):  # a plugin's predictor that skipped Predictor.__init__
        predictor.notes = []
    if hasattr(predictor, "use_runtime"):
        predictor.use_runtime(runtime, _run_cache_dir(folder))
    elif runtime not in ("auto", "tensorflow"):
        predictor.notes.append(f"--runtime {runtime} applies to Keras models (h5, keras); {files[0]} runs in "
                               f"its own runtime ({predictor.runtime}).")
    return predictor


def _run_cache_dir(folder: Path) -> str | None:
    """The --cache-dir the run in ``folder`` used (its converted backbone is there), if any."""
    import tomllib

    try:
        with open(folder / "config.toml", "rb") as f:
            value = tomllib.load(f).get("cache_dir")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


@dataclass
class Prediction:
    path: str
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None

    def top(self, class_names: Sequence[str], k: int = 1) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(class_names[i], float(self.probabilities[i])) for i in order]


def collect_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files from files and folders (folders searched recursively, sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if is_image_file(f)))
        elif p.exists():
            found.append(p)
        else:
            raise DataError(f"{str(p)!r} does not exist; expected an image file or a folder. Check the path.")
    return found


def predict_files(predictor: Predictor, files: Sequence[Path], batch_size: int = 32,
                  progress=None) -> list[Prediction]:
    """Decode and predict in batches through tf.data; a file that cannot be decoded gets
    an ``error`` and does not stop the rest. ``progress(n)``, if given, is called with the
    number of files done after each batch (for a progress bar)."""
    import tensorflow as tf

    from clf.data.images import decode_image, may_scale

    size = predictor.decode_size
    results = [Prediction(str(f)) for f in files]
    if not files:
        return results
    scale = may_scale([str(f) for f in files], size)

    def load(index, path):
        return index, decode_image(tf.io.read_file(path), size, scale)

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(files)), [str(f) for f in files]))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    # ignore_errors drops undecodable files; their index never comes back, which is how we
    # know which ones failed without giving up batching.
    ds = ds.ignore_errors().batch(batch_size).prefetch(tf.data.AUTOTUNE)
    seen = set()
    for indices, images in ds:
        probs = predictor.predict_batch(images.numpy())
        for i, p in zip(indices.numpy().tolist(), probs):
            results[i].probabilities = [float(v) for v in p]
            seen.add(i)
        if progress is not None:
            progress(len(indices))
    for i, r in enumerate(results):
        if i not in seen:
            r.error = _why_unreadable(Path(r.path))
    return results


def _why_unreadable(path: Path) -> str:
    if not path.is_file():
        return "not a file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    return "not a decodable image (JPEG, PNG, BMP or GIF expected)"
