"""Reopen an exported artifact and predict class probabilities on image files, in batches."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from clf.data.images import is_image_file
from clf.errors import DataError, DataNotFoundError, ModelError, ModelNotFoundError
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

    def output_width(self) -> int:
        """How many class scores the model outputs (by default: one black image through it;
        runtimes that know their output shape say so without running)."""
        h, w = self.input_size
        return int(np.asarray(self.predict_batch(np.zeros((1, h, w, 3), np.float32))).shape[-1])

    def decode(self, data: bytes) -> np.ndarray:
        """The bytes of one image file (JPEG, PNG, BMP, GIF) as this model's input: float32
        ``[h, w, 3]``, decoded, centre-cropped and resized by the same ``decode_image`` that
        :func:`predict_files` maps over files, so a file gives the same numbers either way.
        Raises ``tf.errors.InvalidArgumentError`` for bytes that are not a decodable image."""
        from clf.data.images import bytes_may_scale

        fns = getattr(self, "_decode_fns", None)
        if fns is None:
            fns = self._decode_fns = {}
        # As predict_files decides for its files: the per-image scale choice only for a JPEG
        # that may need it, so the same file gives the same bits through either path.
        scale = bytes_may_scale(data, self.decode_size)
        if scale not in fns:
            fns[scale] = _bytes_decoder(self.decode_size, scale)
        return fns[scale](data).numpy()


class KerasPredictor(Predictor):
    runtime = "keras"

    def __init__(self, path: Path, labels: dict):
        super().__init__(path, labels)
        import keras

        from clf.data import preprocessing  # noqa: F401  registers the Preprocess layer

        _check_keras_container(Path(path))
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

        # Always traced: the same image gives the same bits in every batch of clf predict
        # and in clf serve, whichever call came first.
        if self._backbone is None:
            return predict(self.model, images, eager_first=False)
        known = len(self._backbone.notes)
        features = self._backbone.forward(images)
        self.notes.extend(self._backbone.notes[known:])
        if self._backbone.name != "tensorflow":
            self.runtime = f"keras, backbone in {self._backbone.name}"
        return predict(self._head, features, eager_first=False)

    def output_width(self) -> int:
        return int(self.model.output_shape[-1])


def _check_keras_container(path: Path) -> None:
    """A .keras file is a zip archive and a .h5 file HDF5: anything else is named as such
    (Keras itself reports random bytes in a .keras file as 'File not found')."""
    import zipfile

    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{str(path)!r} is not a Keras .keras file: it is not a zip archive "
                         f"(damaged or not a model). Expected a model.keras saved by clf; re-export it.")
    if path.is_file() and suffix in (".h5", ".hdf5"):
        import h5py

        if not h5py.is_hdf5(str(path)):
            raise ModelError(f"{str(path)!r} is not a Keras .h5 file: it is not HDF5 (damaged or not a "
                             f"model). Expected a model.h5 saved by clf; re-export it.")


def _bytes_decoder(size, scale_jpeg: bool):
    """``decode_image`` for one encoded image, traced once (a third of the eager time)."""
    import tensorflow as tf

    from clf.data.images import decode_image

    return tf.function(lambda contents: decode_image(contents, size, scale_jpeg), autograph=False,
                       input_signature=[tf.TensorSpec([], tf.string)])


def resolve_artifact(artifact: str | Path, fmt: str | None = None) -> tuple[Path, str | None, list[str]]:
    """``(bundle folder, exporter name, files)`` for a bundle folder or an artifact in one.

    A folder holding ``labels.json`` is a bundle (its first listed artifact is used, or the
    one of exporter ``fmt``); any other path, a file or an artifact folder such as
    ``saved_model/``, must be listed in the ``labels.json`` beside it (and be of ``fmt``
    when given). ``fmt`` is an exporter's canonical name (not an alias).
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ModelNotFoundError(
            f"Model {str(artifact)!r} does not exist; expected a clf run folder or a model "
            f"file exported by clf. Check the path."
        )
    is_bundle = artifact.is_dir() and (artifact / LABELS_FILE).is_file()
    folder = artifact if is_bundle else artifact.parent
    labels = read_labels(folder)
    exports: dict[str, list[str]] = labels.get("artifacts", {})
    listed = ", ".join(exports) or "none"
    if is_bundle:
        if not exports:
            raise ModelError(f"{str(artifact)!r} lists no artifacts in labels.json; re-export the model.")
        if fmt is None:
            name, files = next(iter(exports.items()))
            return folder, name, files
        if not exports.get(fmt):
            raise ModelError(
                f"{str(artifact)!r} has no {fmt!r} artifact (its labels.json lists: {listed}). "
                f"Pick one of those formats, or export {fmt!r} with 'clf run --export {fmt}'."
            )
        return folder, fmt, exports[fmt]
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
    if fmt is not None and name != fmt:
        raise ModelError(
            f"{str(artifact)!r} is a {name!r} artifact, not {fmt!r}. Pass the run folder with "
            f"that format (its labels.json lists: {listed}), or leave the format out."
        )
    return folder, name, files


def load_predictor(artifact: str | Path, host=None, fmt: str | None = None, *, trust: bool = False,
                   runtime: str = "tensorflow") -> Predictor:
    """Open a clf artifact (a bundle folder, or a model file or folder inside one).

    ``fmt``: an exporter name or alias (``savedmodel``, ``tflite``...) choosing which of a
    bundle's artifacts to open; None or ``"auto"``: the first one its labels.json lists.
    Its labels.json is validated, the artifact's sha256 is checked against the one recorded
    at export before any runtime opens it (``trust=True``: opened anyway), and the model's
    output width must equal the number of class names.

    ``runtime`` (auto, tensorflow, tflite, onnx): what runs the frozen backbone of a Keras
    model (clf.train.runtime_choice); other artifacts run in their own runtime."""
    from clf.artifacts.integrity import check_artifact
    from clf.config import RUNTIMES, check_name
    from clf.host.manager import get_host

    runtime = check_name("runtime", runtime, RUNTIMES)
    host = host or get_host()
    if fmt is not None and fmt.strip().lower() != "auto":
        fmt = host.exporters.get(fmt).name  # an alias becomes the name labels.json uses
    else:
        fmt = None
    folder, exporter_name, files = resolve_artifact(artifact, fmt)
    labels = read_labels(folder)
    exporter = host.exporters.get(exporter_name)
    if exporter.load is None:
        raise ModelError(
            f"Exporter {exporter_name!r} (plugin {exporter.plugin!r}) cannot reopen its "
            f"artifacts for prediction; expected it to register a 'load' function. Use another "
            f"export format for predict."
        )
    path = folder / files[0]
    if not path.exists():
        raise ModelError(f"{str(path)!r}, listed in {str(folder / LABELS_FILE)!r}, does not exist; "
                         f"expected the exported model beside it. Re-export the model.")
    check_artifact(path, labels, trust)
    predictor = exporter.load(path, labels)
    width = predictor.output_width()
    if width != len(predictor.class_names):
        raise ModelError(
            f"{str(folder / LABELS_FILE)!r} lists {len(predictor.class_names)} class name(s) but "
            f"{str(path)!r} outputs {width} score(s); expected one name per output, in output order. "
            f"Re-export the model or fix 'class_names'."
        )
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
    # The model's class names in output order (predict_files sets them from the predictor).
    class_names: list[str] = field(default_factory=list, repr=False)

    def top(self, k: int | Sequence[str] = 1, class_names: Sequence[str] | int | None = None
            ) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(class name, probability)`` pairs, best first.

        The class names are the predictor's; ``top(class_names, k)``, the older form, still
        works."""
        if not isinstance(k, int):  # top(class_names, k): the names came first
            k, class_names = (class_names if isinstance(class_names, int) else 1), k
        names = list(class_names) if class_names is not None else self.class_names
        if not names:
            raise ModelError(
                f"Prediction for {self.path!r} has no class names; expected one made by "
                f"predict_files (which takes them from the model's labels.json). Pass "
                f"class_names=."
            )
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(names[i], float(self.probabilities[i])) for i in order]


def collect_images(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Image files from a file, a folder, or a list of them (folders searched recursively,
    sorted). A single path may be a ``str`` or a ``Path``: it is one path, never a
    sequence of characters."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if is_image_file(f)))
        elif p.exists():
            found.append(p)
        else:
            raise DataNotFoundError(f"{str(p)!r} does not exist; expected an image file or a folder. Check the path.")
    return found


def predict_files(predictor: Predictor, files: Sequence[Path], batch_size: int = 32,
                  progress=None) -> list[Prediction]:
    """Decode and predict in batches through tf.data; a file that cannot be decoded gets
    an ``error`` and does not stop the rest. ``progress(n)``, if given, is called with the
    number of files done after each batch (for a progress bar)."""
    import tensorflow as tf

    from clf.data.filecheck import as_tf_path, display_path, image_problem
    from clf.data.images import decode_image, may_scale

    size = predictor.decode_size
    results = [Prediction(display_path(f), class_names=list(predictor.class_names)) for f in files]
    # Each file is looked at before TensorFlow reads it: a link to /dev/zero, a FIFO, a
    # 6 GB file or a 20000x20000 PNG gets its reason and is never read or decoded.
    for r, f in zip(results, files):
        r.error = image_problem(f)
    readable = [i for i, r in enumerate(results) if r.error is None]
    if progress is not None and len(readable) < len(files):
        progress(len(files) - len(readable))
    if not readable:
        return results
    scale = may_scale([str(files[i]) for i in readable], size)

    def load(index, path):
        return index, decode_image(tf.io.read_file(path), size, scale)

    ds = tf.data.Dataset.from_tensor_slices((np.asarray(readable, np.int64),
                                             [as_tf_path(files[i]) for i in readable]))
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
    for i in readable:
        if i not in seen:
            results[i].error = _why_unreadable(Path(files[i]))
    return results


def _why_unreadable(path: Path) -> str:
    if not path.is_file():
        return "not a file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    return "not a decodable image (JPEG, PNG, BMP or GIF expected)"


def prepare_images(images, image_size) -> np.ndarray:
    """Images as a model's input ``[n, h, w, 3]`` float32 RGB 0-255, prepared exactly as
    ``clf predict`` prepares files: decoded, centre-cropped and resized by the same
    ``decode_image`` (an :class:`~clf.data.images.ImageSize` carries the crop).

    ``images``: a path (``str`` or ``Path``; a folder means its images, sorted) or a list
    of paths; or an array (one ``[h, w, 3]`` image of any size, a batch ``[n, h, w, 3]``,
    a list of arrays of different sizes; PIL images too). Grayscale arrays become RGB."""
    import tensorflow as tf

    from clf.data.images import decode_image, fit_image

    if isinstance(images, (str, os.PathLike)) or (
            isinstance(images, (list, tuple)) and images and all(isinstance(i, (str, os.PathLike)) for i in images)):
        out = []
        for f in collect_images(images):
            try:
                out.append(decode_image(tf.io.read_file(str(f)), image_size).numpy())
            except tf.errors.OpError:
                raise DataError(f"{str(f)!r} could not be read: {_why_unreadable(Path(f))}. Remove it or "
                                f"convert it (clf doctor lists such files).") from None
    else:
        batch = images if isinstance(images, (list, tuple)) else np.asarray(images)
        if isinstance(batch, np.ndarray) and batch.ndim in (2, 3) and not (batch.ndim == 3 and batch.shape[-1] > 4):
            batch = [batch]  # one image, not a batch of rows
        out = [fit_image(tf.convert_to_tensor(_rgb(np.asarray(image))), image_size).numpy() for image in batch]
    if not out:
        raise DataError("No images to predict; expected image files, a folder of them, or arrays "
                        "[height, width, 3]. Pass at least one.")
    return np.stack(out).astype(np.float32)


def _rgb(image: np.ndarray) -> np.ndarray:
    """An ``[h, w, 3]`` RGB array from an RGB, grayscale ``[h, w]`` or ``[h, w, 1]`` one."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise DataError(
            f"An image array of shape {image.shape} cannot be predicted; expected [height, width, 3] "
            f"RGB (or grayscale). Convert it first, e.g. PIL's image.convert('RGB')."
        )
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
