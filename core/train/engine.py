"""``run(config)``: load data, build, train, evaluate, export. Never prints; raises ClfError."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from clf.report import runrecord
from clf.config import RunConfig
from clf.data.images import ImageSize
from clf.train.distribute import distribution, precision_scope
from clf.train import checkpoint
from clf.data import doctor
from clf.data import guardrails
from clf.report.evaluation import evaluate_dataset
from clf.errors import ConfigError, DataError, Interrupted, UsageError
from clf.events import Observer
from clf.artifacts.exporting import check_export_options, export_all
from clf.train.forward import predict as forward_predict
from clf.report.history import RunRecorder, TeeObserver
from clf.artifacts.labels import make_metadata
from clf.train.model import Classifier, build_backbone, build_head, join
from clf.artifacts.verify import MAX_IMAGES
from clf.host.manager import PluginHost, get_host


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
    # split name -> clf.report.metrics.evaluation_report (also in metrics.json)
    evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    verification: Any = None  # clf.artifacts.verify.VerificationReport, None with verify=False
    # Seconds per phase and feature-extraction counts (extracted vs served from the cache).
    timings: dict[str, float] = field(default_factory=dict)
    extraction: dict[str, dict[str, int]] = field(default_factory=dict)
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


def image_size_for(config: RunConfig, backbone) -> ImageSize:
    """The input size, carrying the run's centre crop to every loader and decoder."""
    size = ImageSize((config.image_size, config.image_size) if config.image_size else backbone.input_size,
                     config.center_crop)
    if min(size) < backbone.min_size:
        raise ConfigError(
            f"--image-size {min(size)} is below the minimum of {backbone.min_size} pixels for "
            f"backbone {backbone.name!r}; expected >= {backbone.min_size} (default "
            f"{backbone.input_size[0]}). Pass a larger --image-size."
        )
    return size


def new_run_dir(config: RunConfig) -> Path:
    """``--output`` or ``runs/<timestamp>-<backbone>``; never reuses an existing folder."""
    if config.output:
        path = Path(config.output)
        guardrails.check_output(config.output, config.force)
        if config.force:
            guardrails.replace_output(path)
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


def feature_cache_for(config: RunConfig, backbone, base, image_size):
    """The on-disk feature cache for this extractor, or None with ``--no-cache``."""
    if not config.cache:
        return None
    from clf.train.feature_cache import FeatureCache, default_cache_dir, weights_fingerprint

    return FeatureCache(config.cache_dir or default_cache_dir(), {
        "backbone": backbone.name, "weights": weights_fingerprint(base),
        "image_size": list(image_size), "center_crop": image_size.center_crop,
        "preprocess": backbone.preprocess, "loader": config.loader,
    })


class _EpochReporter:
    """Bridges Keras' per-epoch logs to the observer."""

    @staticmethod
    def make(observer: Observer, phase: str, epochs: int):
        import keras

        class Reporter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                observer.epoch_end(phase, epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})

        return Reporter()


def resume(run_dir, observer: Observer | None = None, host: PluginHost | None = None) -> RunResult:
    """Continue an interrupted run from its last completed epoch (same config, same folder)."""
    ckpt = checkpoint.require(run_dir)
    values = {k: v for k, v in ckpt.config.items() if k not in ("force",)}
    config = RunConfig.from_mapping({**values, "output": str(run_dir)})
    return run(config, observer, host, resume_from=Path(run_dir))


def run(config: RunConfig, observer: Observer | None = None, host: PluginHost | None = None,
        *, resume_from: Path | None = None) -> RunResult:
    """Train, evaluate and export one classifier as ``config`` describes."""
    # The recorder sees every event first: epoch history per phase and wall time per phase
    # for history.csv, training_curves.png and manifest.json.
    recorder = RunRecorder()
    observer = TeeObserver(recorder, observer or Observer())
    started = datetime.now()
    host = host or get_host(config.plugins)
    backbone, head, loader, exporters = resolve_components(config, host)
    check_export_options(config, exporters)
    image_size = image_size_for(config, backbone)
    ckpt = checkpoint.require(resume_from) if resume_from is not None else None
    if ckpt is None:
        guardrails.check_output(config.output, config.force)  # before any slow work

    # The strategy comes first: a multi-worker strategy must configure TensorFlow's
    # runtime before anything (reading data included) starts it.
    dist = distribution(config.strategy, config.precision, config.batch_size)
    if dist.replicas > 1 or not dist.chief:
        observer.note(dist.describe())

    import keras
    import numpy as np
    import tensorflow as tf

    observer.phase_start("data")
    t0 = time.perf_counter()
    report = doctor.preflight(config, loader, observer)
    bundle = loader.load(config.data, image_size=image_size, seed=config.seed,
                         validation_split=config.validation_split, **doctor.loader_options(report))
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
        base = build_backbone(backbone, image_size, None if config.weights == "none" else config.weights)
    head_options = {"dropout": config.dropout, "hidden_units": config.hidden_units}
    observer.phase_end("build", weights=config.weights, params=base.count_params(), **dist.as_info())

    n_train = len(bundle.splits["train"]) if "train" in bundle.splits else 0
    batch_size = guardrails.batch_size_for(config.batch_size, n_train, observer)
    first_epoch = ckpt.epoch if ckpt is not None else 0
    # batch_size is the global batch (see clf.train.distribute): Keras splits it over the replicas.
    val = (dist.batch(bundle.validation, len(bundle.splits.get("validation", [])) or None, "validation",
                      size=batch_size).prefetch(tf.data.AUTOTUNE) if bundle.validation else None)
    timings: dict[str, float] = {}
    extraction: dict[str, dict[str, int]] = {}
    train_f = val_f = test_f = None
    if backbone.trainable:
        # A backbone trained from scratch with the head (the tutorial's small CNN) changes
        # every step: there is nothing to cache, so every epoch runs on live images.
        with dist.strategy.scope(), precision_scope(dist.precision):
            head_model = build_head(head, int(base.output_shape[-1]), bundle.num_classes, head_options)
            clf_model = join(base, head_model, backbone.preprocess, image_size, train_backbone=True)
        fit_model, fit_data, n_fit, fit_val = clf_model.model, bundle.train, n_train, val
        train_counts = [bundle.counts("train")[c] for c in bundle.class_names] if n_train else []
    else:
        # Phase 1: the backbone is frozen, so each image goes through it once (K+1 times
        # with augmented copies) and the head trains on the cached features.
        from clf.train.features import make_extractor, make_standardizer, split_features

        total = sum(len(s) for s in bundle.splits.values()) + n_train * config.augment_copies
        observer.phase_start("extract", total=total or None, unit="image")
        t0 = time.perf_counter()
        # Each worker extracts every image itself, on its own device (no collective step);
        # only the chief writes the disk cache, the others keep their features in memory.
        cache = feature_cache_for(config, backbone, base, image_size) if dist.chief else None
        if cache is not None and not bundle.splits:
            observer.note(f"Loader {config.loader!r} lists no files, so features are not cached on disk.")
        extractor = make_extractor(Classifier(None, base, None, backbone.preprocess), image_size)
        feats = {name: split_features(bundle, name, extractor, batch_size, seed=config.seed,
                                      copies=config.augment_copies if config.augment else 0, cache=cache,
                                      progress=lambda n: observer.phase_advance("extract", n))
                 for name in ("train", "validation", "test")}
        extraction = {n: {"extracted": f.extracted, "cached": f.cached} for n, f in feats.items() if f}
        timings["extract"] = time.perf_counter() - t0
        observer.phase_end("extract", seconds=timings["extract"], counts=extraction,
                           cache_dir=str(cache.dir) if cache else None)
        if config.augment_copies and not config.augment:
            observer.note("--augment-copies is ignored with --no-augment: training on clean features only.")
        train_f, val_f, test_f = feats["train"], feats["validation"], feats["test"]
        keras.utils.set_random_seed(config.seed)
        with dist.strategy.scope(), precision_scope(dist.precision):
            head_model = build_head(head, int(base.output_shape[-1]), bundle.num_classes, head_options,
                                    standardize=make_standardizer(train_f.features))
            clf_model = join(base, head_model, backbone.preprocess, image_size)
        fit_model = head_model
        fit_data = tf.data.Dataset.from_tensor_slices((train_f.features, train_f.labels))
        n_fit = len(train_f.labels)
        fit_val = (dist.batch(tf.data.Dataset.from_tensor_slices((val_f.features, val_f.labels)),
                              len(val_f.labels), "validation", size=256)
                   if val_f is not None else None)
        n_clean = n_fit // (1 + (config.augment_copies if config.augment else 0))  # clean copy first
        train_counts = np.bincount(train_f.labels[:n_clean], minlength=bundle.num_classes).tolist()
    from clf.train.class_weights import choose_class_weights

    class_weight, note = choose_class_weights(config.class_weight, train_counts, bundle.class_names)
    if note:
        observer.note(note)
    if n_fit:
        # Each epoch's order depends only on (seed, epoch), so a resumed run sees the same
        # batches, and so does every strategy (Keras opens an extra iterator under one).
        train = checkpoint.epoch_batches(fit_data, seed=config.seed, batch_size=batch_size,
                                         buffer=n_fit, first_epoch=first_epoch, epochs=config.epochs,
                                         batch=lambda ds: dist.batch(ds, n_fit, size=batch_size))
        steps_per_epoch = dist.steps(n_fit, size=batch_size)
    else:  # a loader that streams: no file list, so no epoch-exact resume
        train = dist.batch(fit_data.shuffle(1024, seed=config.seed), None, size=batch_size)
        steps_per_epoch = None
    with dist.strategy.scope(), precision_scope(dist.precision):
        fit_model.compile(optimizer=keras.optimizers.Adam(config.lr),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    dist.prepare(fit_model)
    if backbone.trainable and config.augment:
        from clf.data.augmentation import augmentation_layers

        aug = augmentation_layers(config.seed)
        train = train.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    train = train.prefetch(tf.data.AUTOTUNE)

    # Only the chief writes the run folder; other workers still run every step (saving
    # may need them) but write to a temporary folder that is removed at the end.
    if not dist.chief:
        run_dir = Path(tempfile.mkdtemp(prefix="clf-worker-"))
    else:
        run_dir = Path(resume_from) if ckpt is not None else new_run_dir(config)
    runrecord.write_config(run_dir, config)  # first, so even a crashed run says what it was
    if report is not None:
        report.write(run_dir)
    if ckpt is not None:
        with dist.strategy.scope():  # optimizer slots made here are mirrored too
            checkpoint.restore(fit_model, ckpt)
        observer.note(f"Resuming {run_dir} after epoch {ckpt.epoch} of {config.epochs}.")
    saver = checkpoint.callback(run_dir, phase="train", epochs=config.epochs, config=config.to_dict(),
                                history=ckpt.history if ckpt is not None else None)
    callbacks = [_EpochReporter.make(observer, "train", config.epochs), saver,
                 *_stopping(config, fit_val is not None), *_plugin_callbacks(host, config, run_dir)]

    observer.phase_start("train", total=config.epochs, unit="epoch")
    t0 = time.perf_counter()
    # Datasets that drop undecodable files have unknown length; Keras then warns "ran out
    # of data" at every evaluation. Epoch length is set by steps_per_epoch, so it is noise.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    try:
        if first_epoch < config.epochs:
            fit_model.fit(train, validation_data=fit_val, epochs=config.epochs, initial_epoch=first_epoch,
                          steps_per_epoch=steps_per_epoch, class_weight=class_weight,
                          callbacks=callbacks, verbose=0, shuffle=False)
    except KeyboardInterrupt:
        done = checkpoint.latest(run_dir, "train")
        raise Interrupted(run_dir, done.epoch if done else 0, config.epochs) from None
    timings["train"] = time.perf_counter() - t0
    observer.phase_end("train", seconds=timings["train"])
    history_dict = {k: [float(v) for v in vs] for k, vs in saver.history_so_far.items()}

    if config.fine_tune_layers:
        history_dict.update(_fine_tune(config, clf_model, bundle, val, class_weight, observer, run_dir,
                                       host, dist, batch_size))
        timings["fine_tune"] = history_dict.pop("_seconds")[0]

    metrics: dict[str, float] = {}
    reports: dict[str, dict[str, Any]] = {}
    # After fine-tuning (or with a backbone trained from scratch) the cached features no
    # longer describe the backbone: evaluate the whole model on images. Otherwise the head on
    # the cached features predicts exactly what the exported model predicts, far faster.
    live = backbone.trainable or bool(config.fine_tune_layers)
    to_evaluate = {name: (f, ds) for name, f, ds in (("validation", val_f, val), ("test", test_f, bundle.test))
                   if (ds if live else f) is not None}
    observer.phase_start("evaluate", total=sum(len(bundle.splits[n]) for n in to_evaluate if n in bundle.splits)
                         or None, unit="image")
    for split_name, (split_f, ds) in to_evaluate.items():
        if live:
            if split_name == "test":
                ds = dist.batch(ds, len(bundle.splits.get("test", [])) or None, "test",
                                size=batch_size).prefetch(tf.data.AUTOTUNE)
            # Evaluation runs on this process's own device: one prediction row per image.
            reports[split_name] = evaluate_dataset(dist.local_model(clf_model.model), ds,
                                                   bundle.class_names, observer)
        else:
            feats = tf.data.Dataset.from_tensor_slices((split_f.features, split_f.labels)).batch(256)
            reports[split_name] = evaluate_dataset(dist.local_model(head_model), feats,
                                                   bundle.class_names, observer)
        metrics[f"{split_name}_loss"] = reports[split_name]["loss"]
        metrics[f"{split_name}_accuracy"] = reports[split_name]["accuracy"]
    observer.phase_end("evaluate", metrics=metrics, reports=reports)

    metadata = make_metadata(bundle.class_names, backbone.name, image_size, backbone.preprocess,
                             weights=config.weights, precision=dist.precision)

    def cached_probs(split):
        # Without fine-tuning the head on the cached features is the exported model's
        # output (within 1e-5, tested), so verification need not run the backbone for it.
        f = {"validation": val_f, "test": test_f}.get(split)  # train: its order may differ
        return None if live or f is None else forward_predict(head_model, f.features[:MAX_IMAGES])

    artifacts, verification = export_all(clf_model.model, run_dir, metadata, exporters, config, bundle, observer,
                                         reference=dist.local_model(clf_model.model),
                                         reference_probs=cached_probs)

    observer.phase_start("record")
    primary = "test" if "test" in reports else ("validation" if "validation" in reports else None)
    record = runrecord.write_evaluation(run_dir, reports, primary) + runrecord.write_history(run_dir, recorder.epochs)
    manifest = runrecord.build_manifest(
        config=config, class_names=bundle.class_names, counts=counts, splits=bundle.splits,
        seconds={**recorder.seconds, "total": (datetime.now() - started).total_seconds()},
        backbone=backbone.name, image_size=image_size, started=started,
        extra={"artifacts": metadata["artifacts"], "metrics": metrics, "evaluated_on": primary,
               "verification": metadata.get("verification"), "extraction": extraction},
    )
    record.append(runrecord.write_json(run_dir / "manifest.json", manifest))
    observer.phase_end("record", run_dir=run_dir, files=record, reports=reports, primary=primary)

    if not dist.chief:
        shutil.rmtree(run_dir, ignore_errors=True)
        artifacts = {}
    return RunResult(config, run_dir, bundle.class_names, history_dict, metrics, artifacts,
                     clf_model, counts, evaluation=reports, manifest=manifest, verification=verification,
                     timings=timings, extraction=extraction, distribution=dist.as_info())


def _plugin_callbacks(host, config: RunConfig, run_dir: Path) -> list:
    """The callbacks plugins add through the register_callbacks hook (None: sits this run out)."""
    made = (factory.make(config, run_dir) for factory in host.callbacks)
    return [cb for cb in made if cb is not None]


def _stopping(config: RunConfig, has_validation: bool) -> list:
    """Early stopping on validation loss with the best epoch's weights restored."""
    if not config.patience or not has_validation:
        return []
    import keras

    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                          restore_best_weights=True)]


def _fine_tune(config, clf_model, bundle, val, class_weight, observer, run_dir, host, dist,
               batch_size) -> dict:
    """Phase 2: unfreeze the top of the backbone and train end to end on live images."""
    import keras
    import tensorflow as tf

    from clf.data.augmentation import augmentation_layers
    from clf.train.finetune import fine_tune_lr, unfreeze_top

    names = unfreeze_top(clf_model.backbone, config.fine_tune_layers)
    lr = fine_tune_lr(config)
    observer.note(f"Fine-tuning {len(names)} backbone layer(s) ({names[0]} ... {names[-1]}) for "
                  f"{config.fine_tune_epochs} epoch(s) at learning rate {lr:g}; BatchNormalization "
                  f"stays frozen in inference mode.")
    n = len(bundle.splits.get("train", []))
    if n:  # the same (seed, epoch)-keyed order as phase 1, under every strategy
        train = checkpoint.epoch_batches(bundle.train, seed=config.seed, batch_size=batch_size, buffer=n,
                                         first_epoch=0, epochs=config.fine_tune_epochs,
                                         batch=lambda ds: dist.batch(ds, n, size=batch_size))
        steps = dist.steps(n, size=batch_size)
    else:
        train = dist.batch(bundle.train.shuffle(1024, seed=config.seed), None, size=batch_size)
        steps = None
    if config.augment:
        aug = augmentation_layers(config.seed)
        train = train.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    train = train.prefetch(tf.data.AUTOTUNE)
    # The new optimizer's variables are mirrored too; the model keeps its dtype policy.
    with dist.strategy.scope(), precision_scope(dist.precision):
        clf_model.model.compile(optimizer=keras.optimizers.Adam(lr),
                                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    dist.prepare(clf_model.model)
    callbacks = [_EpochReporter.make(observer, "fine_tune", config.fine_tune_epochs),
                 *_stopping(config, val is not None), *_plugin_callbacks(host, config, run_dir)]
    observer.phase_start("fine_tune", total=config.fine_tune_epochs, unit="epoch")
    t0 = time.perf_counter()
    history = clf_model.model.fit(train, validation_data=val, epochs=config.fine_tune_epochs,
                                  steps_per_epoch=steps, class_weight=class_weight,
                                  callbacks=callbacks, verbose=0, shuffle=False)
    seconds = time.perf_counter() - t0
    observer.phase_end("fine_tune", seconds=seconds)
    out = {f"fine_tune_{k}": [float(v) for v in vs] for k, vs in history.history.items()}
    out["_seconds"] = [seconds]
    return out
