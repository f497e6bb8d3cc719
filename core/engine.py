"""``run(config)``: load data, build, train, evaluate, export. Never prints; raises ClfError."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import runrecord
from .config import RunConfig
from .distribute import distribution, precision_scope
from .evaluation import evaluate_dataset
from .errors import ClfError, ConfigError, DataError, ExportError, UsageError
from .events import Observer
from .history import RunRecorder, TeeObserver
from .labels import make_metadata, write_labels
from .model import Classifier, build_classifier
from .plugin_manager import PluginHost, get_host


@dataclass
class RunResult:
    config: RunConfig
    run_dir: Path
    class_names: list[str]
    history: dict[str, list[float]]
    metrics: dict[str, float]
    artifacts: dict[str, list[Path]]
    classifier: Classifier = field(repr=False)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # split name -> clf.metrics.evaluation_report (also in metrics.json)
    evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    # How it ran: strategy, replicas, precision, global/per-replica batch, chief or not.
    # A non-chief worker of a multi-worker run writes no artifacts (run_dir was a temp dir).
    distribution: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self):
        return self.classifier.model

    def predict(self, images) -> Any:
        """Probabilities for a batch of raw RGB 0-255 images ``[n, h, w, 3]``."""
        import numpy as np

        return self.model.predict(np.asarray(images, np.float32), verbose=0)


def resolve_components(config: RunConfig, host: PluginHost):
    """Look up every named component before any work, so a typo fails at once."""
    backbone = host.backbones.get(config.backbone)
    head = host.heads.get(config.head)
    loader = host.loaders.get(config.loader)
    exporters = [host.exporters.get(name) for name in config.export]
    return backbone, head, loader, exporters


def image_size_for(config: RunConfig, backbone) -> tuple[int, int]:
    size = (config.image_size, config.image_size) if config.image_size else tuple(backbone.input_size)
    if min(size) < backbone.min_size:
        raise ConfigError(
            f"--image-size {min(size)} is below the minimum of {backbone.min_size} pixels for "
            f"backbone {backbone.name!r}; expected >= {backbone.min_size} (default "
            f"{backbone.input_size[0]}). Pass a larger --image-size."
        )
    return size  # type: ignore[return-value]


def new_run_dir(config: RunConfig) -> Path:
    """``--output`` or ``runs/<timestamp>-<backbone>``; never reuses an existing folder."""
    if config.output:
        path = Path(config.output)
        if path.exists() and any(path.iterdir()):
            raise UsageError(
                f"Output folder {str(path)!r} already exists and is not empty; expected a new "
                f"or empty folder so no earlier run is overwritten. Pass another --output."
            )
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path("runs") / f"{stamp}-{config.backbone}"
        path, n = base, 2
        while True:
            # mkdir without exist_ok claims the name atomically: two runs started in the
            # same second get -2, -3, ... instead of sharing (and overwriting) one folder.
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                path, n = base.with_name(f"{base.name}-{n}"), n + 1
            except OSError as exc:
                raise UsageError(
                    f"Cannot create output folder {str(path)!r}: {exc.strerror}; expected a "
                    f"writable location. Pass --output."
                ) from None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"Cannot create output folder {str(path)!r}: {exc.strerror}; expected a writable "
            f"location. Pass another --output."
        ) from None
    return path


def augmentation_layers(seed: int):
    """The tutorial's augmentation (shear 0.2, zoom 0.2, horizontal flip), on training only."""
    import keras

    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomZoom(0.2, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomShear(x_factor=0.2, y_factor=0.0, fill_mode="nearest", seed=seed + 2),
    ], name="augmentation")


class _EpochReporter:
    """Bridges Keras' per-epoch logs to the observer."""

    @staticmethod
    def make(observer: Observer, phase: str, epochs: int):
        import keras

        class Reporter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                observer.epoch_end(phase, epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})

        return Reporter()


def run(config: RunConfig, observer: Observer | None = None, host: PluginHost | None = None) -> RunResult:
    """Train, evaluate and export one classifier as ``config`` describes."""
    # The recorder sees every event first: epoch history per phase and wall time per phase
    # for history.csv, training_curves.png and manifest.json.
    recorder = RunRecorder()
    observer = TeeObserver(recorder, observer or Observer())
    started = datetime.now()
    host = host or get_host(config.plugins)
    backbone, head, loader, exporters = resolve_components(config, host)
    image_size = image_size_for(config, backbone)

    # The strategy comes first: a multi-worker strategy must configure TensorFlow's
    # runtime before anything (reading data included) starts it.
    dist = distribution(config.strategy, config.precision, config.batch_size)
    if dist.replicas > 1 or not dist.chief:
        observer.note(dist.describe())

    import keras
    import tensorflow as tf

    observer.phase_start("data")
    t0 = time.perf_counter()
    bundle = loader.load(config.data, image_size=image_size, seed=config.seed,
                         validation_split=config.validation_split)
    if config.classes is not None and config.classes != bundle.num_classes:
        raise DataError(
            f"--classes {config.classes} but {config.data} has {bundle.num_classes} class "
            f"folders ({', '.join(bundle.class_names)}). Pass --classes {bundle.num_classes} "
            f"or omit --classes to infer it."
        )
    counts = {name: bundle.counts(name) for name in bundle.splits}
    observer.phase_end("data", class_names=bundle.class_names, counts=counts,
                       seconds=time.perf_counter() - t0)

    if config.weights == "none":
        observer.note(f"Backbone {backbone.name} uses random weights (--weights none): "
                      f"expect much lower accuracy than with pretrained weights.")
    observer.phase_start("build")
    keras.utils.set_random_seed(config.seed)
    # Variables made inside the scope are mirrored on every replica; layers made inside the
    # precision scope take its dtype policy (the policy is restored afterwards).
    with dist.strategy.scope(), precision_scope(dist.precision):
        clf_model = build_classifier(
            backbone, head, bundle.num_classes, image_size,
            None if config.weights == "none" else config.weights,
            {"dropout": config.dropout, "hidden_units": config.hidden_units},
        )
        clf_model.model.compile(optimizer=keras.optimizers.Adam(config.lr),
                                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    dist.prepare(clf_model.model)
    observer.phase_end("build", weights=config.weights, params=clf_model.model.count_params(),
                       **dist.as_info())

    # config.batch_size is the global batch: Keras splits each one across the replicas.
    train, steps = dist.epochs(bundle.train, len(bundle.splits.get("train", [])) or None,
                               config.seed, config.epochs)
    if config.augment:
        aug = augmentation_layers(config.seed)
        train = train.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    train = train.prefetch(tf.data.AUTOTUNE)
    val = (dist.batch(bundle.validation, len(bundle.splits.get("validation", [])) or None, "validation")
           .prefetch(tf.data.AUTOTUNE) if bundle.validation else None)

    # Only the chief writes the run folder; other workers still run every step (saving
    # may need them) but write to a temporary folder that is removed at the end.
    run_dir = new_run_dir(config) if dist.chief else Path(tempfile.mkdtemp(prefix="clf-worker-"))
    runrecord.write_config(run_dir, config)  # first, so even a crashed run says what it was
    callbacks = [_EpochReporter.make(observer, "train", config.epochs)]
    for factory in host.callbacks:
        cb = factory.make(config, run_dir)
        if cb is not None:
            callbacks.append(cb)

    observer.phase_start("train", total=config.epochs, unit="epoch")
    t0 = time.perf_counter()
    history = clf_model.model.fit(train, validation_data=val, epochs=config.epochs, steps_per_epoch=steps,
                                  callbacks=callbacks, verbose=0, shuffle=False)
    observer.phase_end("train", seconds=time.perf_counter() - t0)

    metrics: dict[str, float] = {}
    reports: dict[str, dict[str, Any]] = {}
    to_evaluate = {name: ds for name, ds in (("validation", val), ("test", bundle.test)) if ds is not None}
    observer.phase_start("evaluate", total=sum(len(bundle.splits[n]) for n in to_evaluate if n in bundle.splits)
                         or None, unit="image")
    for split_name, ds in to_evaluate.items():
        if split_name == "test":
            ds = dist.batch(ds, len(bundle.splits.get("test", [])) or None, "test").prefetch(tf.data.AUTOTUNE)
        reports[split_name] = evaluate_dataset(dist.local_model(clf_model.model), ds, bundle.class_names, observer)
        metrics[f"{split_name}_loss"] = reports[split_name]["loss"]
        metrics[f"{split_name}_accuracy"] = reports[split_name]["accuracy"]
    observer.phase_end("evaluate", metrics=metrics, reports=reports)

    observer.phase_start("export", total=len(exporters))
    metadata = make_metadata(bundle.class_names, backbone.name, image_size, backbone.preprocess,
                             weights=config.weights, precision=dist.precision)
    artifacts: dict[str, list[Path]] = {}
    for exporter in exporters:
        try:
            files = [Path(f) for f in exporter.export(clf_model.model, run_dir, dict(metadata))]
        except ClfError:
            raise
        except Exception as exc:
            raise ExportError(
                f"Exporter {exporter.name!r} (plugin {exporter.plugin!r}) failed: "
                f"{type(exc).__name__}: {exc}. The run folder {str(run_dir)!r} keeps what was "
                f"written before; try another --export."
            ) from exc
        artifacts[exporter.name] = files
        observer.phase_advance("export")
    metadata["artifacts"] = {name: [f.name for f in files] for name, files in artifacts.items()}
    write_labels(run_dir, metadata)
    observer.phase_end("export", artifacts=artifacts, run_dir=run_dir)

    observer.phase_start("record")
    primary = "test" if "test" in reports else ("validation" if "validation" in reports else None)
    record = runrecord.write_evaluation(run_dir, reports, primary) + runrecord.write_history(run_dir, recorder.epochs)
    manifest = runrecord.build_manifest(
        config=config, class_names=bundle.class_names, counts=counts, splits=bundle.splits,
        seconds={**recorder.seconds, "total": (datetime.now() - started).total_seconds()},
        backbone=backbone.name, image_size=image_size, started=started,
        extra={"artifacts": metadata["artifacts"], "metrics": metrics, "evaluated_on": primary},
    )
    record.append(runrecord.write_json(run_dir / "manifest.json", manifest))
    observer.phase_end("record", run_dir=run_dir, files=record, reports=reports, primary=primary)

    if not dist.chief:
        shutil.rmtree(run_dir, ignore_errors=True)
        artifacts = {}
    return RunResult(config, run_dir, bundle.class_names,
                     {k: [float(v) for v in vs] for k, vs in history.history.items()},
                     metrics, artifacts, clf_model, counts, reports, manifest, dist.as_info())
