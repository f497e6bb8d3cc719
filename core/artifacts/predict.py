"""Reopen an exported artifact and predict class probabilities on image files, in batches."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence, TYPE_CHECKING, cast

import numpy as np

from clf.artifacts.labels import (LABELS_FILE, check_artifact, decide, is_known, is_multilabel, output_width,
                                  read_labels, split_outputs)
from clf.artifacts.answering import (OPENVINO_SOURCES, RUNTIME_MODULES, TENSORFLOW_FREE, TENSORFLOW_FREE_RUNTIMES,
                                     candidates, installed)
from clf.errors import ClfError, ModelError, ModelNotFoundError
from clf.infer.decode import Decoder, collect_images, why_unreadable
from clf.config import RUNTIMES, check_name
from clf.host.manager import get_host
from clf.data.filecheck import display_path, image_problem
from clf.data.images import ImageSize
from clf.infer.choice import BackboneRuntime
from clf.infer.store import extractor_parts, runtime_store
from clf.infer.forward import predict

if TYPE_CHECKING:
    from clf.host.manager import PluginHost

__all__ = ["Prediction", "Predictor", "KerasPredictor", "collect_images", "load_predictor", "predict_files",
           "resolve_artifact", "to_predictions", "unknown_rule", "UNKNOWN_MODES"]

# What a predictor does with a model's known score (labels.json "unknown"): auto applies it, off ignores it.
UNKNOWN_MODES = ("auto", "off")


class Predictor:
    """An artifact opened in its own runtime. Subclasses implement ``predict_batch``.

    ``runtime``: ``keras``, ``tf.saved_model``, ``tflite`` or ``onnxruntime``;
    ``quantization``: ``"none"`` for float artifacts (verified within tolerance, else by
    top-1 agreement)."""

    runtime = "unknown"
    quantization = "none"
    unknown = "auto"  # UNKNOWN_MODES; load_predictor(unknown=) sets it

    def __init__(self, path: Path, labels: dict) -> None:
        self.path = Path(path)
        self.labels = labels
        self.notes: list[str] = []  # what the user should know (a runtime fallback taken)
        self.class_names: list[str] = list(labels["class_names"])
        self.input_size: tuple[int, int] = tuple(labels["input_size"])  # type: ignore[assignment]

    @property
    def decode_size(self) -> ImageSize:
        """The input size with the model's trained centre crop (none recorded: no crop)."""
        return ImageSize(self.input_size, float(self.labels.get("resize", {}).get("center_crop", 0.0)))

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """``images``: float32 RGB 0-255 ``[n, h, w, 3]`` -> the model's outputs ``[n, output_width(labels)]``:
        probabilities, then the known score when labels.json records one (``to_predictions`` splits them)."""
        raise NotImplementedError

    def output_width(self) -> int:
        """How many class scores the model outputs (by default: one black image through it)."""
        h, w = self.input_size
        return int(np.asarray(self.predict_batch(np.zeros((1, h, w, 3), np.float32))).shape[-1])

    @cached_property
    def decoder(self) -> Decoder:
        """The decoder for this model's input (size and centre crop): the one every path uses."""
        return Decoder(self.decode_size, tensorflow=self.runtime not in TENSORFLOW_FREE_RUNTIMES)

    def decode(self, data: bytes) -> np.ndarray:
        """One image file's bytes as float32 ``[h, w, 3]`` input (``clf.infer.decode.Decoder.from_bytes``);
        ``tf.errors.InvalidArgumentError`` for undecodable bytes."""
        return self.decoder.from_bytes(data)


class KerasPredictor(Predictor):
    runtime = "keras"

    def __init__(self, path: Path, labels: dict) -> None:
        super().__init__(path, labels)
        import keras

        from clf.data import preprocessing  # noqa: F401  registers the Preprocess layer
        from clf.data.fitting import fixed_model

        _check_keras_container(Path(path))
        try:
            self.model = keras.models.load_model(str(path), compile=False)
        except Exception as exc:
            raise ModelError(
                f"Could not load Keras model {str(path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}. Expected a model saved by clf. If it uses "
                f"a plugin's backbone or preprocessing, pass that --plugin too."
            ) from None

        self._backbone: BackboneRuntime | None = None  # set by use_runtime
        self._head = None
        # Images at the input size skip the photo model's crop and resize; others take the whole model.
        self._fixed = fixed_model(self.model)

    def use_runtime(self, requested: str, cache_dir: str | Path | None = None) -> None:
        """Run the frozen backbone in ``requested`` (``auto``: the run's checked choice if cached, else TensorFlow)
        and the head in Keras; models clf did not assemble run whole in Keras."""
        from clf.infer.store import split

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
        key = extractor_parts(self.labels.get("backbone"), extractor, self.input_size,
                              (self.labels.get("preprocessing") or {}).get("mode"))
        store = runtime_store(cache_dir, key)
        backbone = BackboneRuntime(requested, extractor, store, no_conversion=(
            "auto converts only in training runs; pass --runtime tflite or onnx" if requested == "auto" else None))
        self.notes.extend(backbone.notes)
        # Decided on TensorFlow already (auto with no converted copy): the whole model runs as one.
        self._backbone = None if backbone.name == "tensorflow" else backbone

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        # Always traced: same bits for an image in any batch, in clf predict and clf serve.
        if self._backbone is None:
            at_size = tuple(np.shape(images)[1:3]) == tuple(self._fixed.input_shape[1:3])
            return predict(self._fixed if at_size else self.model, images)
        known = len(self._backbone.notes)
        features = self._backbone.run(images)
        self.notes.extend(self._backbone.notes[known:])
        if self._backbone.name != "tensorflow":
            self.runtime = f"keras, backbone in {self._backbone.name}"
        return predict(self._head, features)

    def output_width(self) -> int:
        return int(self.model.output_shape[-1])


class OpenVINOPredictor(Predictor):
    """A run's .onnx or .tflite artifact in OpenVINO (``load_predictor(runtime="openvino")``)."""

    runtime = "openvino"

    def __init__(self, path: Path, labels: dict) -> None:
        super().__init__(path, labels)
        from clf.infer.runners import OpenVINORunner, RuntimeUnavailable

        try:
            self._runner = OpenVINORunner(path)
        except RuntimeUnavailable as exc:
            raise ModelError(f"Predicting with {str(path)!r} in OpenVINO needs it: {exc}.") from None
        except Exception as exc:
            raise ModelError(f"OpenVINO could not open {str(path)!r}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Expected a .onnx or "
                             f".tflite file exported by clf.") from None

    def output_width(self) -> int:
        return int(self._runner.output_width() or 0)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        return self._runner.run(images)


def _check_keras_container(path: Path) -> None:
    """A .keras file must be a zip and a .h5 file HDF5 (Keras calls a bad .keras 'File not found')."""
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


def resolve_artifact(artifact: str | Path, fmt: str | None = None) -> tuple[Path, str, list[str]]:
    """``(bundle folder, exporter name, files)`` for a bundle folder or an artifact in one.

    A folder holding ``labels.json`` is a bundle (its first listed artifact, or exporter
    ``fmt``'s); any other path must be listed in the ``labels.json`` beside it (and be of
    ``fmt`` when given). ``fmt``: an exporter's canonical name, not an alias."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise ModelNotFoundError(
            f"Model {str(artifact)!r} does not exist; expected a clf run folder or a model "
            f"file exported by clf. Check the path."
        )
    is_bundle = artifact.is_dir() and (artifact / LABELS_FILE).is_file()
    if artifact.is_dir() and not is_bundle and not (artifact.parent / LABELS_FILE).is_file():
        raise ModelNotFoundError(_not_a_run_folder(artifact))
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


def _not_a_run_folder(folder: Path) -> str:
    """What to say for a folder that is no run (a folder of runs, say): a few runs inside it."""
    try:
        runs = sorted((d for d in folder.iterdir() if (d / LABELS_FILE).is_file()), key=lambda d: d.name)
    except OSError:
        runs = []
    if not runs:
        return (f"{str(folder)!r} is a folder without {LABELS_FILE}, so not a clf run folder, and holds no run "
                f"folder either; expected a clf run's output folder (with {LABELS_FILE}) or a model file in "
                f"one. Check the path.")
    shown = ", ".join(repr(str(d)) for d in runs[-3:][::-1])
    more = f" (3 of {len(runs)})" if len(runs) > 3 else ""
    return (f"{str(folder)!r} is a folder of runs, not a clf run folder (it has no {LABELS_FILE}); it holds "
            f"{shown}{more}. Pass one of them, e.g. {str(runs[-1])!r}.")


def load_predictor(artifact: str | Path, host: PluginHost | None = None, fmt: str | None = None, *, trust: bool = False,
                   runtime: str = "tensorflow", unknown: str = "auto") -> Predictor:
    """Open a clf artifact (a bundle folder, or a model file or folder inside one).

    ``fmt``: an exporter name or alias choosing which of a bundle's artifacts to open; None: the
    first listed; ``"auto"`` (what ``clf predict``, ``evaluate`` and ``serve`` pass) with ``runtime``
    auto: the fastest float artifact that export verification passed and that runs without
    TensorFlow (``clf.artifacts.answering``), else the first listed, with a note saying why.
    labels.json is validated, the sha256 checked before any runtime opens the file
    (``trust=True``: opened anyway), and the output width must equal the class count (plus one
    for a known score). ``runtime`` (auto, tensorflow, tflite, onnx): what runs a Keras model's
    frozen backbone (clf.infer.choice); ``openvino``: the bundle's .onnx or .tflite in OpenVINO.
    ``unknown``: ``auto`` marks photos below the model's known-score threshold unknown
    (``Prediction.unknown``); ``off`` ignores the score."""
    runtime = check_name("runtime", runtime, RUNTIMES)
    unknown = check_name("unknown", unknown, UNKNOWN_MODES)
    host = host or get_host()
    choose = fmt is not None and fmt.strip().lower() == "auto"
    if fmt is not None:  # an alias becomes the name labels.json uses
        fmt = None if choose else host.exporters.get(fmt).name
    notes: list[str] = []
    chosen: Predictor | None = None
    if runtime == "openvino":
        chosen = _open_in_openvino(artifact, fmt, trust)
    elif choose and runtime == "auto" and Path(artifact).is_dir() and (Path(artifact) / LABELS_FILE).is_file():
        chosen, notes = _tensorflow_free(Path(artifact), host, trust)
    predictor = chosen if chosen is not None else _open(artifact, host, fmt, trust)
    if not hasattr(predictor, "notes"):  # a plugin's predictor that skipped Predictor.__init__
        predictor.notes = []
    predictor.notes[:0] = notes
    predictor.unknown = unknown
    if hasattr(predictor, "use_runtime"):
        predictor.use_runtime(runtime, _run_cache_dir(predictor.path.parent))
    elif runtime not in ("auto", "tensorflow", "openvino"):
        predictor.notes.append(f"--runtime {runtime} applies to Keras models (h5, keras); {predictor.path.name} "
                               f"runs in its own runtime ({predictor.runtime}).")
    return predictor


def _tensorflow_free(folder: Path, host: PluginHost, trust: bool) -> tuple[Predictor | None, list[str]]:
    """The first of the bundle's ``answering.candidates`` that opens, or None; the notes say why
    the listed TensorFlow-free artifacts did not answer (when none did)."""
    labels = read_labels(folder)
    usable, skipped = candidates(folder, labels)
    damaged: list[str] = []
    for name in usable:
        try:
            predictor = _open(folder, host, name, trust)
        except ClfError as exc:  # a damaged file (sha256), a runtime that fails to open it
            damaged.append(f"{labels['artifacts'][name][0]} could not answer: {exc}")
            continue
        return predictor, [f"{line}; {predictor.path.name} answers instead." for line in damaged]
    skipped += damaged
    if not skipped:
        return None, _faster_hint(folder, labels)
    first = next(iter(labels.get("artifacts", {}).values()), ["?"])[0]
    return None, [f"{first} answers (in TensorFlow) instead of a faster artifact: " + "; ".join(skipped)]


def _faster_hint(folder: Path, labels: dict) -> list[str]:
    """With no TensorFlow-free artifact in the run (a plain ``--export h5`` run): how to add one."""
    if labels.get("quantization"):
        return []
    fmt = next((f for f in TENSORFLOW_FREE if installed(RUNTIME_MODULES[f])), None)
    if fmt is None:
        return []
    first = next(iter(labels.get("artifacts", {}).values()), ["?"])[0]
    return [f"{first} answers in TensorFlow, whose import takes seconds; once 'clf export {folder} --export {fmt}' "
            f"has added a verified {fmt} file, clf predict answers without TensorFlow."]


def _open_in_openvino(artifact: str | Path, fmt: str | None, trust: bool) -> Predictor:
    """``--runtime openvino``: the bundle's verified .onnx or .tflite (``fmt``, or the first of
    ``OPENVINO_SOURCES``; a file passed must be one of those) in OpenVINO."""
    path = Path(artifact)
    if path.is_dir() and (path / LABELS_FILE).is_file():
        folder = path
        labels = read_labels(folder)
        if fmt is None:
            usable, skipped = candidates(folder, labels, OPENVINO_SOURCES,
                                         dict.fromkeys(OPENVINO_SOURCES, RUNTIME_MODULES["openvino"]))
            if not usable:
                why = "; ".join(skipped) or f"it lists {', '.join(labels.get('artifacts', {})) or 'none'}"
                raise ModelError(f"--runtime openvino runs a run's .onnx or .tflite artifact, and {str(folder)!r} "
                                 f"has none it can use ({why}). Export one with 'clf export {folder} --export "
                                 f"onnx', or pick another --runtime.")
            fmt = usable[0]
    folder, name, files = resolve_artifact(artifact, fmt)
    if name not in OPENVINO_SOURCES:
        raise ModelError(f"--runtime openvino runs .onnx or .tflite artifacts; {files[0]} is a {name!r} one. Pass "
                         f"the run folder or its model.onnx / model.tflite, or pick another --runtime.")
    labels = read_labels(folder)
    path = folder / files[0]
    if not path.exists():
        raise ModelError(f"{str(path)!r}, listed in {str(folder / LABELS_FILE)!r}, does not exist; "
                         f"expected the exported model beside it. Re-export the model.")
    check_artifact(path, labels, trust)
    predictor = OpenVINOPredictor(path, labels)
    _check_width(predictor, folder, path, labels)
    return predictor


def _open(artifact: str | Path, host: PluginHost, fmt: str | None, trust: bool) -> Predictor:
    """The artifact through its exporter's ``load``, its sha256 and output width checked."""
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
    _check_width(predictor, folder, path, labels)
    return predictor


def _check_width(predictor: Predictor, folder: Path, path: Path, labels: dict) -> None:
    width = predictor.output_width()
    column = (labels.get("unknown") or {}).get("column", len(predictor.class_names))
    if width != output_width(labels) or column != len(predictor.class_names):
        known = " and a known score ('unknown')" if labels.get("unknown") else ""
        raise ModelError(
            f"{str(folder / LABELS_FILE)!r} lists {len(predictor.class_names)} class name(s){known} but "
            f"{str(path)!r} outputs {width} score(s); expected one output per name, in output order"
            f"{', then the known score (unknown.column ' + str(column) + ')' if known else ''}. "
            f"Re-export the model or fix 'class_names'."
        )


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
    """One image's answer: a probability per class (``top()`` names the best), or an ``error``.
    A model with a known score (labels.json ``unknown``) also gives ``known_score``; ``unknown``
    is True below its threshold (``clf.artifacts.labels.is_known``), and ``top()`` is then the
    class the photo would have been."""

    path: str
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None
    # The model's class names in output order (predict_files sets them from the predictor).
    class_names: list[str] = field(default_factory=list, repr=False)
    # The model's known score in [0, 1] (labels.json "unknown"); None: the model has none, or --unknown off.
    known_score: float | None = None
    # Below the known-score threshold: none of the classes; top() still names the class it would have been.
    unknown: bool = False
    # Multi-label models (labels.json task "multilabel"): the classes whose sigmoid score reaches its
    # threshold, highest score first (possibly none); None for a single-label model.
    labels: list[str] | None = None

    def top(self, k: int | Sequence[str] = 1, class_names: Sequence[str] | int | None = None
            ) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(class name, probability)`` pairs, best first (``top(class_names, k)`` too)."""
        if not isinstance(k, int):  # top(class_names, k): the names came first
            k, class_names = (class_names if isinstance(class_names, int) else 1), k
        names = list(cast("Sequence[str]", class_names)) if class_names is not None else self.class_names
        if not names:
            raise ModelError(
                f"Prediction for {self.path!r} has no class names; expected one made by "
                f"predict_files (which takes them from the model's labels.json). Pass "
                f"class_names=."
            )
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(names[i], float(self.probabilities[i])) for i in order]


def unknown_rule(predictor: Predictor) -> dict | None:
    """labels.json's ``unknown`` record when the predictor applies it; None: no known score, or ``unknown="off"``."""
    record = predictor.labels.get("unknown")
    return record if record and getattr(predictor, "unknown", "auto") != "off" else None


def to_predictions(predictor: Predictor, paths: Sequence[str], outputs: np.ndarray) -> list[Prediction]:
    """One ``Prediction`` per row of the model's ``outputs`` (``Predictor.predict_batch``): the class
    probabilities and, when the predictor applies one, the known score and its verdict."""
    labels = predictor.labels
    probs, known = split_outputs(labels, np.asarray(outputs))
    if unknown_rule(predictor) is None:
        known = None
    names = list(predictor.class_names)
    chosen = decide(labels, probs) if is_multilabel(labels) else None
    results = []
    for i, (path, p) in enumerate(zip(paths, probs)):
        score = None if known is None else float(known[i])
        over = None if chosen is None else [names[c] for c in np.argsort(-p, kind="stable") if chosen[i, c]]
        results.append(Prediction(path, [float(v) for v in p], class_names=names, known_score=score,
                                  unknown=not is_known(labels, score), labels=over))
    return results


def predict_files(predictor: Predictor, files: Sequence[Path], batch_size: int = 32,
                  progress: Callable[[int], None] | None = None) -> list[Prediction]:
    """Decode (``clf.infer.decode.Decoder.files``) and predict in batches; an undecodable file
    gets an ``error`` without stopping the rest. ``progress(n)``: files done, after each batch.
    Each prediction carries the known score and its verdict when the model has one (``to_predictions``)."""
    # Checked before the decoder reads it: a link to /dev/zero, a FIFO or a huge image is never read.
    names = list(predictor.class_names)
    results = [Prediction(display_path(f), error=image_problem(f), class_names=names) for f in files]
    readable = [i for i, r in enumerate(results) if r.error is None]
    if progress is not None and len(readable) < len(files):
        progress(len(files) - len(readable))
    # closing: an error here ends the decoding (and its silenced stderr) before it propagates
    with closing(predictor.decoder.files([files[i] for i in readable], batch_size)) as batches:
        for positions, images in batches:
            rows = [readable[position] for position in positions]
            outputs = np.asarray(predictor.predict_batch(images))
            for row, prediction in zip(rows, to_predictions(predictor, [results[r].path for r in rows], outputs)):
                results[row] = prediction
            if progress is not None:
                progress(len(positions))
    for i in readable:  # decoded ones have a probability per class (one at least)
        if not results[i].probabilities:
            results[i].error = why_unreadable(Path(files[i]))
    return results
