"""clf: image classification by transfer learning, built from plugins.

    import clf
    result = clf.run(clf.RunConfig(backbone="vgg16", data="photos/", epochs=5))
    predictor = clf.load_predictor(result.run_dir)

Names are imported on first use, so ``import clf`` does not import TensorFlow.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__version__ = "0.1.0"

from clf.hookspecs import hookimpl  # noqa: E402  (plugins import it: keep it eager and cheap)

# name -> module under clf; the default plugins import only these, as a third-party plugin would.
_LAZY = {
    # running and reading runs
    "RunConfig": "config", "run": "api", "resume": "api",
    "RunResult": "train.engine", "export": "artifacts.reexport",
    "DoctorReport": "data.doctor", "examine": "data.doctor",
    "Observer": "events", "RecordingObserver": "events",
    "Prediction": "artifacts.predict", "Predictor": "artifacts.predict",
    "KerasPredictor": "artifacts.predict", "collect_images": "infer.decode",
    "load_predictor": "artifacts.predict", "predict_files": "artifacts.predict", "to_predictions": "artifacts.predict",
    "merge_predictions": "artifacts.shards", "shard_files": "artifacts.shards", "parse_shard": "artifacts.shards",
    "PluginHost": "host.manager", "get_host": "host.manager",
    "inspect_run": "inspect.report", "InspectResult": "inspect.report",
    # errors
    "ClfError": "errors", "ConfigError": "errors", "DataError": "errors", "ExportError": "errors",
    "ModelError": "errors", "NotFoundError": "errors", "PluginError": "errors", "UnknownComponentError": "errors",
    "UsageError": "errors", "VerificationError": "errors", "WeightsError": "errors",
    "Interrupted": "errors",
    # the plugin API: data loaders
    "DatasetBundle": "data.images", "Split": "data.images", "ImageSize": "data.images",
    "IMAGE_SUFFIXES": "data.images", "is_image_file": "data.images", "is_class_folder": "data.images",
    "decode_image": "data.images", "files_dataset": "data.images",
    "read_labels_file": "data.labels_file", "resolve_task": "data.labels_file",
    "check_labels_rows": "data.labels_file", "is_labels_file": "data.labels_file",
    "find_layout": "data.layout", "check_data_root": "data.layout", "class_folders": "data.layout",
    # backbones
    "register_preprocess": "data.preprocessing", "WeightsFile": "artifacts.weights",
    "keras_downloads": "artifacts.weights", "keras_cache_dir": "files",
    # exporters
    "atomic_path": "files", "write_json": "files", "h5_holds": "artifacts.keras_files", "QUANTIZE_MODES": "config",
    "photo_model": "data.fitting", "fixed_model": "data.fitting", "is_photo_model": "data.fitting",
    "FitPhoto": "data.fitting", "MODEL_INPUTS": "config",
    # the inference core: one converter per format, one runner per runtime, one decoder
    "to_tflite": "infer.convert", "to_onnx": "infer.convert", "stamp_onnx_metadata": "infer.convert",
    "Runner": "infer.runners", "TensorFlowRunner": "infer.runners", "LiteRTRunner": "infer.runners",
    "OnnxRunner": "infer.runners", "RuntimeUnavailable": "infer.runners", "cpu_threads": "infer.runners",
    "Decoder": "infer.decode",
    # any plugin calling into TensorFlow code that logs what users cannot act on
    "quiet_logs": "logs",
}

__all__ = sorted([*_LAZY, "hookimpl", "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clf' has no attribute {name!r}")
    if "tensorflow" not in sys.modules:
        # silence TensorFlow's import-time logs (CLF_DEBUG=1 keeps them; see clf.logs)
        from clf.logs import quiet_tensorflow

        quiet_tensorflow()
    value = getattr(importlib.import_module(f"clf.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
