"""clf: image classification by transfer learning, built from plugins.

    import clf
    result = clf.run(clf.RunConfig(backbone="vgg16", data="photos/", epochs=5))
    predictor = clf.load_predictor(result.run_dir)
"""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (plugins import it; keep it first and cheap)
from .config import RunConfig  # noqa: E402
from .data import DatasetBundle, Split  # noqa: E402
from .engine import RunResult, run  # noqa: E402
from .errors import (  # noqa: E402
    ClfError, ConfigError, DataError, ExportError, ModelError, PluginError,
    UnknownComponentError, UsageError, WeightsError,
)
from .events import Observer, RecordingObserver  # noqa: E402
from .plugin_manager import PluginHost, get_host  # noqa: E402
from .predict import Prediction, Predictor, collect_images, load_predictor, predict_files  # noqa: E402

__all__ = [
    "ClfError", "ConfigError", "DataError", "DatasetBundle", "ExportError", "ModelError",
    "Observer", "PluginError", "PluginHost", "Prediction", "Predictor", "RecordingObserver",
    "RunConfig", "RunResult", "Split", "UnknownComponentError", "UsageError", "WeightsError",
    "collect_images", "get_host", "hookimpl", "load_predictor", "predict_files", "run",
    "__version__",
]
