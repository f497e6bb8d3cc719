"""Reopen an exported artifact and predict class probabilities on image files, in batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .data import is_image_file
from .errors import DataError, ModelError
from .labels import read_labels


class Predictor:
    """An artifact opened in its own runtime. Subclasses implement ``predict_batch``."""

    def __init__(self, path: Path, labels: dict):
        self.path = Path(path)
        self.labels = labels
        self.class_names: list[str] = list(labels["class_names"])
        self.input_size: tuple[int, int] = tuple(labels["input_size"])  # type: ignore[assignment]

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """``images``: float32 RGB 0-255 ``[n, h, w, 3]`` -> probabilities ``[n, classes]``."""
        raise NotImplementedError


class KerasPredictor(Predictor):
    def __init__(self, path: Path, labels: dict):
        super().__init__(path, labels)
        import keras

        from . import preprocessing  # noqa: F401  registers the Preprocess layer

        try:
            self.model = keras.models.load_model(str(path), compile=False)
        except Exception as exc:
            raise ModelError(
                f"Could not load Keras model {str(path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}. Expected a model saved by clf. If it uses "
                f"a plugin's backbone or preprocessing, pass that --plugin too."
            ) from None

    def predict_batch(self, images):
        return np.asarray(self.model.predict_on_batch(np.asarray(images, np.float32)))


def load_predictor(artifact: str | Path, host=None) -> Predictor:
    """Open a clf artifact (a bundle folder or a model file inside one)."""
    from .plugin_manager import get_host

    artifact = Path(artifact)
    if not artifact.exists():
        raise ModelError(
            f"Model {str(artifact)!r} does not exist; expected a clf run folder or a model "
            f"file exported by clf. Check the path."
        )
    labels = read_labels(artifact)
    exports: dict[str, list[str]] = labels.get("artifacts", {})
    folder = artifact if artifact.is_dir() else artifact.parent
    if artifact.is_dir():
        if not exports:
            raise ModelError(f"{str(artifact)!r} lists no artifacts in labels.json; re-export the model.")
        exporter_name, files = next(iter(exports.items()))
    else:
        matches = [(n, f) for n, f in exports.items() if f and f[0] == artifact.name]
        if not matches:
            raise ModelError(
                f"{str(artifact)!r} is not an artifact listed in {str(folder / 'labels.json')!r} "
                f"(listed: {', '.join(f[0] for f in exports.values() if f) or 'none'}). Pass one "
                f"of those files or the folder."
            )
        exporter_name, files = matches[0]
    exporter = (host or get_host()).exporters.get(exporter_name)
    if exporter.load is None:
        raise ModelError(
            f"Exporter {exporter_name!r} (plugin {exporter.plugin!r}) cannot reopen its "
            f"artifacts for prediction; expected it to register a 'load' function. Use another "
            f"export format for predict."
        )
    return exporter.load(folder / files[0], labels)


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

    from .data import decode_image

    size = predictor.input_size
    results = [Prediction(str(f)) for f in files]
    if not files:
        return results

    def load(index, path):
        return index, decode_image(tf.io.read_file(path), size)

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
