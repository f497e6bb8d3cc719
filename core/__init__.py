"""clf: image classification by transfer learning, built from plugins.

    import clf
    result = clf.run(clf.RunConfig(backbone="vgg16", data="photos/", epochs=5))
    predictor = clf.load_predictor(result.run_dir)

Names are imported on first use, so ``import clf`` (and ``clf --help``) does not pay for
importing TensorFlow until something needs it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (plugins import it: keep it eager and cheap)

_LAZY = {
    "RunConfig": "config",
    "DatasetBundle": "data", "Split": "data",
    "RunResult": "engine", "run": "engine", "resume": "engine",
    "DoctorReport": "doctor", "examine": "doctor",
    "ClfError": "errors", "ConfigError": "errors", "DataError": "errors", "ExportError": "errors",
    "ModelError": "errors", "PluginError": "errors", "UnknownComponentError": "errors",
    "UsageError": "errors", "VerificationError": "errors", "WeightsError": "errors",
    "Interrupted": "errors",
    "Observer": "events", "RecordingObserver": "events",
    "PluginHost": "plugin_manager", "get_host": "plugin_manager",
    "Prediction": "predict", "Predictor": "predict", "collect_images": "predict",
    "load_predictor": "predict", "predict_files": "predict",
}

__all__ = sorted([*_LAZY, "hookimpl", "__version__"])


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
