"""TensorFlow SavedModel for TF Serving: ``saved_model/``, whose ``serving_default`` takes
``image`` (float32 RGB 0-255; a photo model's: any size, a ``fixed`` signature beside it) and
returns probabilities. Reloading needs neither Keras nor clf. The label record goes in
``assets.extra/labels.json``: TF Serving gets the folder alone and keeps such files there."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from clf import hookimpl, atomic_path, ModelError, Predictor, write_json

SIGNATURE = "serving_default"
FIXED_SIGNATURE = "fixed"  # beside a photo serving_default: the fixed-size input
EXTRA = "assets.extra"  # TF Serving's folder for files beside the graph


def export_savedmodel(model: Any, directory: Path, metadata: dict[str, Any]) -> list[Path]:
    """TensorFlow SavedModel folder: saved_model/ (serving_default signature)."""
    from clf import fixed_model, is_photo_model  # here: they import Keras, and listings must not

    path = Path(directory) / "saved_model"
    with atomic_path(path) as tmp:  # the whole folder appears at once, or not at all
        if is_photo_model(model):  # serving_default: a photo of any size; fixed: at the input size
            import keras
            import tensorflow as tf

            archive = keras.export.ExportArchive()
            archive.track(model)
            for name, m in ((SIGNATURE, model), (FIXED_SIGNATURE, fixed_model(model))):
                spec = tf.TensorSpec([None, *m.input_shape[1:]], tf.float32, name="image")
                archive.add_endpoint(name, _serve(m), input_signature=[spec])
            archive.write_out(str(tmp), verbose=False)
        else:
            model.export(str(tmp), format="tf_saved_model", verbose=False)
        (tmp / EXTRA).mkdir(exist_ok=True)
        write_json(tmp / EXTRA / "labels.json", metadata)
    return [path]


def _serve(m: Any) -> Callable[[Any], Any]:  # a closure: a default argument joins the signature
    return lambda image: m(image, training=False)


class SavedModelPredictor(Predictor):
    runtime = "tf.saved_model"

    def __init__(self, path: Path, labels: dict) -> None:
        super().__init__(path, labels)
        import tensorflow as tf

        try:
            self._loaded = tf.saved_model.load(str(path))
            self._fn = self._loaded.signatures[SIGNATURE]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(
                f"Could not load SavedModel {str(path)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Expected a folder "
                f"with saved_model.pb and a {SIGNATURE!r} signature, as clf exports it."
            ) from None
        self._input = next(iter(self._fn.structured_input_signature[1]))

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        outputs = self._fn(**{self._input: tf.constant(np.asarray(images, np.float32))})
        return np.asarray(next(iter(outputs.values())))


@hookimpl
def register_exporters(register: Callable[..., None]) -> None:
    register("savedmodel", export_savedmodel, load=SavedModelPredictor, aliases=("saved_model", "tf"),
             description="TensorFlow SavedModel folder for TF Serving (serving_default signature)")
