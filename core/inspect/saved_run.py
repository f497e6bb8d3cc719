"""A finished run folder read back for inspection: its config, labels, manifest, exported
Keras model (backbone and head exactly as trained) and features. The backbone's weights and
the recorded runtime give the run's own feature-cache key, so nothing is extracted again;
files the cache lacks are extracted as the engine does and stored for next time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, TYPE_CHECKING

from clf.config import RunConfig, read_config_file
from clf.data.images import DatasetBundle, ImageSize, Split, files_dataset
from clf.errors import DataError, ModelError, UsageError
from clf.artifacts.labels import read_labels
from clf.data.manifest import read_manifest, split_files
from clf.events import Observer
from clf.train.features import make_extractor, split_features, SplitFeatures
from clf.infer.store import extractor_parts, runtime_store
from clf.infer.choice import BackboneRuntime

if TYPE_CHECKING:
    from clf.host.manager import PluginHost

SPLITS = ("train", "validation")
KERAS_EXPORTERS = ("keras", "h5")  # exporters whose artifact reopens as a keras.Model


@dataclass
class SavedRun:
    run_dir: Path
    config: RunConfig
    labels: dict[str, Any]  # labels.json
    manifest: dict[str, Any]
    data_root: Path
    splits: dict[str, Split]  # absolute file paths and class indices, per inspected split
    relative: dict[str, list[str]]  # the same files as the manifest names them (relative to data_root)

    @property
    def class_names(self) -> list[str]:
        return list(self.labels["class_names"])

    @property
    def image_size(self) -> ImageSize:
        """The model's input size with the centre crop it was trained with."""
        return ImageSize(self.labels["input_size"], float(self.labels.get("resize", {}).get("center_crop", 0.0)))

    def model_file(self) -> Path:
        """The run's Keras artifact (``.keras`` or ``.h5``)."""
        exported = self.labels.get("artifacts", {})
        for name in KERAS_EXPORTERS:
            if exported.get(name):
                return self.run_dir / exported[name][0]
        raise ModelError(
            f"Run {str(self.run_dir)!r} exported no Keras model (artifacts: "
            f"{', '.join(exported) or 'none'}); expected a 'keras' or 'h5' artifact, which "
            f"inspection reopens for its backbone and head. Train again with --export h5 (the default)."
        )


def load_run(run_dir: str | Path, data: str | Path | None = None) -> SavedRun:
    """Read a run folder; ``data`` replaces the data folder the run recorded (moved data)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"Run folder {str(run_dir)!r} does not exist; expected the folder 'clf run' wrote. Check the path.")
    if not (run_dir / "labels.json").exists():  # a run folder, not a model bundle: say so
        raise UsageError(f"{str(run_dir)!r} has no labels.json; expected a finished clf run folder "
                         f"(it holds the class names). Pass the folder 'clf run' printed at the end.")
    labels = read_labels(run_dir)
    manifest = read_manifest(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise UsageError(f"{str(run_dir)!r} has no config.toml; expected a finished clf run folder.")
    values = read_config_file(run_dir / "config.toml")
    config = RunConfig.from_mapping({k: v for k, v in values.items() if k != "force"})
    root = Path(data) if data is not None else Path(manifest.get("data", {}).get("source", config.data))
    recorded = split_files(manifest, list(labels["class_names"]), root, run_dir / "manifest.json")
    splits, relative, missing = {}, {}, []
    for split in SPLITS:
        files, classes, names = recorded.get(split, ([], [], []))
        missing += [name for file, name in zip(files, names) if not file.is_file()]
        if files:
            splits[split], relative[split] = Split([str(f) for f in files], classes), names
    if "train" not in splits:
        raise DataError(f"The manifest of {str(run_dir)!r} lists no training files; expected a run made from "
                        f"image files (a loader with file lists). Inspection needs the files.")
    if missing:
        hint = ("The folder is not there: pass --data with the data folder's new place." if not root.is_dir() else
                "The data changed since the run (e.g. 'clf relabel' moved files) or --data points elsewhere: "
                "train again with 'clf run' and inspect the new run.")
        raise DataError(
            f"{len(missing)} file(s) of the run are missing under {str(root)!r} (first: {missing[0]}); "
            f"expected every file the run's manifest lists. {hint}"
        )
    return SavedRun(run_dir, config, labels, manifest, root, splits, relative)


@dataclass
class RunModel:
    """The run's exported model, taken apart: images -> preprocess -> backbone -> head."""

    model: Any  # keras.Model: RGB 0-255 images -> probabilities (and the known score, when it has one)
    backbone: Any  # keras.Model: preprocessed images -> pooled features
    head: Any  # keras.Model: pooled features -> probabilities
    preprocess: str
    known: Any = None  # the KnownScore layer on the pooled features (clf.train.unknown); None: the run has none


def load_model(run: SavedRun) -> RunModel:
    import keras

    from clf.data import preprocessing  # noqa: F401  registers Preprocess and Standardize
    from clf.data.fitting import check_input_size, fixed_model

    path = run.model_file()
    try:
        # An exported model takes the photo (clf.data.fitting); its classifier is inside.
        model = fixed_model(keras.models.load_model(str(path), compile=False))
    except Exception as exc:
        raise ModelError(
            f"Could not load {str(path)!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. "
            f"Expected the model clf exported; if the run used a plugin's backbone, pass that --plugin."
        ) from None
    check_input_size(model, run.labels["input_size"], str(run.run_dir / "labels.json"))
    try:
        head = model.get_layer("head")
        preprocess = model.get_layer("preprocess").mode
    except ValueError:
        raise ModelError(f"{str(path)!r} is not a clf classifier (no 'preprocess' and 'head' layers); "
                         f"expected a model exported by 'clf run'.") from None
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer is not head)
    known = _known_layer(head)
    if known is not None:  # the probabilities' own head, inside the one that adds the known score
        head = next(layer for layer in head.layers if isinstance(layer, keras.Model))
    return RunModel(model, backbone, head, preprocess, known)


def _known_layer(head: Any) -> Any:
    """The head's KnownScore layer (clf.train.unknown.attach puts it beside the probabilities' head)."""
    from clf.data.preprocessing import KnownScore

    return next((layer for layer in head.layers if isinstance(layer, KnownScore)), None)


def run_features(run: SavedRun, parts: RunModel, host: PluginHost, *, cache: bool = True,
                 observer: Observer | None = None) -> dict[str, SplitFeatures]:
    """``{split: SplitFeatures}`` for the run's training and validation files, in manifest order."""
    from clf.train.extraction import feature_cache_for
    from clf.train.model import Classifier

    observer = observer or Observer()
    size = run.image_size
    config = run.config.replace(cache=cache)
    backbone = host.backbones.get(run.labels.get("backbone", config.backbone))
    extractor = make_extractor(Classifier(None, parts.backbone, None, parts.preprocess, config.tta), size)
    key = extractor_parts(backbone.name, parts.backbone, size, backbone.preprocess, config.tta)
    runtime = ((run.manifest.get("runtime") or {}).get("name") or "tensorflow") if cache else "tensorflow"
    store = feature_cache_for(config, key, size, runtime, observer.note)
    # Files the cache lacks go through the run's runtime (opened on the first miss).
    forward = (BackboneRuntime(runtime, extractor, runtime_store(config.cache_dir, key)).run
               if runtime != "tensorflow" else None)
    dataset = partial(files_dataset, image_size=size)
    train, validation = (_Lazy(dataset, s.files, s.labels) if s else None
                         for s in (run.splits.get("train"), run.splits.get("validation")))
    bundle = DatasetBundle(run.class_names, train, validation, splits=run.splits, make_dataset=dataset)
    observer.phase_start("extract", total=sum(len(s) for s in run.splits.values()), unit="image")
    t0 = time.perf_counter()
    found = {name: split_features(bundle, name, extractor, config.batch_size, cache=store, tta=config.tta,
                                progress=lambda n: observer.phase_advance("extract", n), forward=forward)
           for name in run.splits}
    out = {name: f for name, f in found.items() if f is not None}  # each inspected split has its dataset
    observer.phase_end("extract", seconds=time.perf_counter() - t0,
                       counts={n: {"extracted": f.extracted, "cached": f.cached} for n, f in out.items()},
                       cache_dir=str(store.dir) if store else None)
    return out


class _Lazy:
    """A split's dataset, built on first use: a warm inspection reads files only through
    ``make_dataset`` and so never traces the slow image decoder."""

    def __init__(self, make: Callable[..., Any], *args: Any) -> None:
        self._make, self._args, self._dataset = make, args, None

    def __getattr__(self, name: str) -> Any:
        if self._dataset is None:
            self._dataset = self._make(*self._args)
        return getattr(self._dataset, name)
