"""MediaPipe-ready TFLite: ``model_mediapipe.tflite``, the fixed-size float model with the
standard TFLite metadata that MediaPipe Tasks' ``ImageClassifier`` reads (image input and its
normalisation, class labels), written with MediaPipe's own metadata writer; needs the
``mediapipe`` extra (docs/deploy.md).

The model takes RGB 0-255 at the run's input size with clf's preprocessing inside, so the
metadata's normalisation is mean 0, std 1: MediaPipe then feeds the pixel values unchanged.
A model with a known score gets a second classification head, ``known_score``, with the single
category ``known_score`` (apps read ``classifications[1]``), so the class head's top-k and
score threshold never mix it with the classes."""

from __future__ import annotations

import importlib
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from clf import hookimpl, atomic_path, ExportError, ModelError, Predictor, quiet_logs, to_tflite

INSTALL_HINT = "Install the MediaPipe extra: pip install 'clf[mediapipe]'."
FILE_NAME = "model_mediapipe.tflite"
CLASS_HEAD = "probabilities"
KNOWN_HEAD = "known_score"  # the head's name and its one category's name


def _metadata_writer() -> Any:
    """MediaPipe's ``metadata_writer`` module. Wheels since 0.10.30 ship its Python side without
    the compiled helper that only reports the minimum metadata-parser version; where it is
    missing, a stand-in gives the version of the fields written here (schema 1.0.0)."""
    helper = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
    try:
        importlib.import_module(helper)
    except ImportError:
        stub = types.ModuleType(helper)
        stub.GetMinimumMetadataParserVersion = lambda _buffer: "1.0.0"  # type: ignore[attr-defined]
        parent = None
        for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python"):
            try:  # a real package where the wheel has one, else an empty stand-in
                module = importlib.import_module(name)
            except ImportError:
                module = types.ModuleType(name)
                module.__path__ = []
                sys.modules[name] = module
            if parent is not None:
                setattr(parent, name.rsplit(".", 1)[1], module)
            parent = module
        setattr(parent, "_pywrap_metadata_version", stub)
        sys.modules[helper] = stub
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    return metadata_writer


def mediapipe_model(model: Any, class_count: int, known: bool) -> Any:
    """The fixed-size model (0-255 RGB in); with a known score, two outputs: the class
    probabilities ``[n, classes]`` and the known score ``[n, 1]``."""
    import keras

    from clf import fixed_model  # here: it imports Keras, and listings must not

    fixed = fixed_model(model)
    if not known:
        return fixed
    inputs = keras.Input(shape=fixed.input_shape[1:], name="image")
    outputs = fixed(inputs)
    probabilities = keras.layers.Lambda(lambda t: t[:, :class_count], name=CLASS_HEAD)(outputs)
    score = keras.layers.Lambda(lambda t: t[:, class_count:class_count + 1], name=KNOWN_HEAD)(outputs)
    return keras.Model(inputs, [probabilities, score], name="clf_mediapipe_classifier")


def _output_widths(flatbuffer: bytes) -> list[int]:
    """The width of each output tensor, in the flatbuffer's order (the order metadata follows)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite.python.interpreter import Interpreter
    with quiet_logs():
        details = Interpreter(model_content=flatbuffer).get_output_details()
    return [int(d["shape"][-1]) for d in details]


def with_metadata(flatbuffer: bytes, metadata: dict[str, Any]) -> bytes:
    """``flatbuffer`` with MediaPipe's image-classifier metadata: one head per output tensor."""
    mw = _metadata_writer()
    names = list(metadata["class_names"])
    known = metadata.get("unknown")
    writer = mw.MetadataWriter.create(bytearray(flatbuffer))
    writer.add_general_info(
        "clf image classifier",
        f"{metadata.get('backbone', 'a Keras Applications backbone')} transfer-learned on {len(names)} classes "
        f"by clf; input RGB 0-255 at {metadata['input_size'][1]}x{metadata['input_size'][0]} (width x height), "
        f"preprocessing inside the model.")
    writer.add_image_input([0.0], [1.0])  # the model takes the 0-255 pixels themselves
    for width in _output_widths(flatbuffer):
        if known and width == 1:
            writer.add_classification_output(
                mw.Labels().add([KNOWN_HEAD], exported_filename="known_score_labels.txt"), name=KNOWN_HEAD,
                description=f"How much the photo looks like the training images; the photo is one of the "
                            f"classes when the score is >= {float(known['threshold']):g}, unknown otherwise.")
        else:
            writer.add_classification_output(mw.Labels().add(names), name=CLASS_HEAD,
                                             description="The probability of each class.")
    content, _ = writer.populate()
    return bytes(content)


def export_mediapipe(model: Any, directory: Path, metadata: dict[str, Any]) -> list[Path]:
    """The float TFLite model at the fixed input size with MediaPipe's classifier metadata."""
    try:
        _metadata_writer()
    except ImportError as exc:
        raise ExportError(f"The mediapipe exporter cannot run: {exc}. {INSTALL_HINT}") from None
    names = list(metadata["class_names"])
    flatbuffer = to_tflite(mediapipe_model(model, len(names), bool(metadata.get("unknown"))))
    content = with_metadata(flatbuffer, metadata)
    path = Path(directory) / FILE_NAME
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return [path]


def open_classifier(path: Path | bytes, *, max_results: int = -1, score_threshold: float | None = None) -> Any:
    """MediaPipe Tasks' ImageClassifier on a model file (or its bytes), CPU, still images."""
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

    base = BaseOptions(model_asset_buffer=path) if isinstance(path, bytes) else \
        BaseOptions(model_asset_path=str(path))
    options = ImageClassifierOptions(base_options=base, max_results=max_results,
                                     **({} if score_threshold is None else {"score_threshold": score_threshold}))
    with quiet_logs():
        return ImageClassifier.create_from_options(options)


def classify(classifier: Any, image: np.ndarray) -> Any:
    """One RGB image (0-255, any dtype: rounded to 8 bits as MediaPipe takes it) -> MediaPipe's result."""
    import mediapipe as mp

    pixels = np.ascontiguousarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
    with quiet_logs():
        return classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))


def result_outputs(result: Any, class_count: int, known: bool) -> np.ndarray:
    """A MediaPipe ``ImageClassifierResult`` as clf's output row: the class probabilities by
    category index, then the known score."""
    row = np.zeros(class_count + (1 if known else 0), np.float32)
    for head in result.classifications:
        for category in head.categories:
            if head.head_name == KNOWN_HEAD:
                row[class_count] = category.score
            else:
                row[category.index] = category.score
    return row


def crop_box(height: int, width: int, input_size: tuple[int, int] | list[int], fraction: float) -> tuple[float, ...]:
    """clf's centre crop (``clf.data.fitting.center_box``) of a ``height`` x ``width`` photo as
    MediaPipe's normalised ``region_of_interest``: ``(left, top, right, bottom)`` in 0-1."""
    if not fraction:
        return 0.0, 0.0, 1.0, 1.0
    aspect = input_size[1] / input_size[0]
    largest = min(height, width / aspect)
    box_h = min(largest, max(largest * fraction, float(input_size[0])))
    bh = min(max(int(np.round(box_h)), 1), height)
    bw = min(max(int(np.round(box_h * aspect)), 1), width)
    top, left = (height - bh) // 2, (width - bw) // 2
    return left / width, top / height, (left + bw) / width, (top + bh) / height


class MediaPipePredictor(Predictor):
    """The artifact run by MediaPipe Tasks' ImageClassifier, one image at a time, as an app does."""

    runtime = "mediapipe"
    # MediaPipe takes 8-bit images, so verification compares on the images rounded to 8 bits;
    # what the rounding itself moves is measured in benchmarks/deploy_clients.py.
    eight_bit_input = True

    def __init__(self, path: Path, labels: dict[str, Any]) -> None:
        super().__init__(path, labels)
        with self._opened():  # a file MediaPipe cannot open fails here, not at the first prediction
            pass

    @contextmanager
    def _opened(self) -> Iterator[Any]:
        """The classifier, closed on leaving: per call, never at interpreter exit, where MediaPipe's
        own executor has already shut down and its close fails noisily."""
        try:
            classifier = open_classifier(self.path)
        except ImportError:
            raise ModelError(f"Predicting with {str(self.path)!r} needs mediapipe. {INSTALL_HINT}") from None
        except Exception as exc:
            raise ModelError(
                f"MediaPipe could not open {str(self.path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Expected a {FILE_NAME} exported by clf."
            ) from None
        try:
            yield classifier
        finally:
            classifier.close()

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        known = bool(self.labels.get("unknown"))
        with self._opened() as classifier:
            rows = [result_outputs(classify(classifier, image), len(self.class_names), known)
                    for image in np.asarray(images)]
        return np.stack(rows) if rows else np.zeros((0, len(self.class_names) + known), np.float32)


@hookimpl
def register_exporters(register: Callable[..., None]) -> None:
    register("mediapipe", export_mediapipe, load=MediaPipePredictor, requires=("mediapipe",), fixed_input=True,
             install="pip install 'clf[mediapipe]'",
             description="TFLite with MediaPipe ImageClassifier metadata (Android, iOS, web); "
                         "needs the 'mediapipe' extra")
