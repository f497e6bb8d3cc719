"""The head phase (cached features for a frozen backbone; live images for one trained from
scratch, which changes every step), then optional fine-tuning of the backbone's top layers.
The default softmax head on cached features is solved (clf.train.linear_head); other heads
train with Keras fit and keep their best validation epoch. Fine-tuning keeps BatchNormalization
in inference mode: a small batch of new photos would wreck its ImageNet statistics.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from clf.errors import ConfigError, Interrupted
from clf.events import Observer
from clf.train import checkpoint, linear_head, optim
from clf.train.class_weights import choose_class_weights, noted_imbalance
from clf.train.distribute import precision_scope
from clf.train.model import Classifier, build_head, join
from clf.train.features import make_standardizer

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from clf.config import RunConfig
    from clf.data.loading import LoadedData
    from clf.data.preprocessing import Standardize
    from clf.host.manager import PluginHost
    from clf.train.checkpoint import Checkpoint
    from clf.train.distribute import Distribution
    from clf.train.extraction import Extracted
    from clf.train.features import SplitFeatures
    from clf.train.setup import Setup


# Heads the linear solver may solve: the built-in softmax; a plugin's head trains with Keras.
SOLVABLE_HEADS = {("clf.plugins.heads", "softmax"), ("clf.plugins.heads", "sigmoid")}


@dataclass
class Trainable:
    """What the head phase trains, and on what (features or images)."""

    classifier: Classifier  # the joined model that is exported
    head_model: keras.Model  # over the feature vector
    fit_model: keras.Model  # head_model on cached features; the whole model from scratch
    fit_data: tf.data.Dataset  # unbatched (features or images, label)
    n_fit: int  # rows in fit_data (0: a streaming loader, length unknown)
    validation: tf.data.Dataset | None  # batched validation data for fit (same kind as fit_data)
    train_counts: list[int]  # clean training images per class, for class weights
    live_validation: tf.data.Dataset | None = None  # batched validation images, for fine-tuning and live evaluation
    train_features: SplitFeatures | None = None  # the training split's features, when cached
    n_clean: int = 0  # the first n_clean rows of train_features are the images, the rest augmented copies
    # Multi-label: train_features' targets, 0/1 [rows, classes] (clf.train.multilabel.split_targets)
    targets: Any = None


@dataclass
class Fitted:
    history: dict[str, list[float]]  # fine-tuning's keys are prefixed fine_tune_
    seconds: float
    class_weight: dict[int, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # how it was trained, for the record


def assemble(setup: Setup, data: LoadedData, base: keras.Model, extracted: Extracted | None, dist: Distribution,
             batch_size: int) -> Trainable:
    """Build the head and join it to the backbone (``extracted`` None: the backbone trains too)."""
    import keras
    import numpy as np
    import tensorflow as tf

    config, bundle, num_classes = setup.config, data.bundle, data.bundle.num_classes
    width = int(base.output_shape[-1])
    # Batched validation images, for training on live images and evaluating them.
    val_images = None if bundle.validation is None else dist.batch(
        bundle.validation, len(bundle.splits.get("validation", [])) or None, "validation",
        size=batch_size).prefetch(tf.data.AUTOTUNE)
    if extracted is None:
        with dist.strategy.scope(), precision_scope(dist.precision):
            head_model = build_head(setup.head, width, num_classes, setup.head_options)
            classifier = join(base, head_model, setup.backbone.preprocess, setup.image_size, train_backbone=True,
                              tta=config.tta)
        counts = [bundle.counts("train")[c] for c in bundle.class_names] if data.n_train else []
        return Trainable(classifier, head_model, classifier.model, bundle.train, data.n_train, val_images,
                         counts, val_images)

    train_f, val_f = extracted["train"], extracted["validation"]
    assert train_f is not None
    head = setup.head
    if bundle.multilabel:  # a sigmoid a class, the targets as 0/1 rows
        from clf.train.multilabel import head_for, split_targets

        head = head_for(setup)
    keras.utils.set_random_seed(config.seed)  # the head starts the same however extraction went
    with dist.strategy.scope(), precision_scope(dist.precision):
        head_model = build_head(head, width, num_classes, setup.head_options,
                                standardize=make_standardizer(train_f.features))
        classifier = join(base, head_model, setup.backbone.preprocess, setup.image_size, tta=config.tta)
    train_y, val_y, targets = train_f.labels, val_f.labels if val_f is not None else None, None
    if bundle.multilabel:
        train_y = targets = split_targets(bundle, "train", len(train_f.labels))
        val_y = split_targets(bundle, "validation", len(val_f.labels)) if val_f is not None else None
    fit_val = (dist.batch(tf.data.Dataset.from_tensor_slices((val_f.features, val_y)),
                          len(val_f.labels), "validation", size=256) if val_f is not None else None)
    n_fit = len(train_f.labels)
    n_clean = n_fit // (1 + (config.augment_copies if config.augment else 0))  # clean copy first
    counts = np.bincount(train_f.labels[:n_clean], minlength=num_classes).tolist()
    return Trainable(classifier, head_model, head_model,
                     tf.data.Dataset.from_tensor_slices((train_f.features, train_y)),
                     n_fit, fit_val, counts, val_images, train_f, n_clean, targets)


def training_batches(dataset: tf.data.Dataset, n: int, *, seed: int, batch_size: int, first_epoch: int, epochs: int,
                     dist: Distribution) -> tuple[tf.data.Dataset, int | None]:
    """Batches and steps per epoch, each epoch's order depending only on (seed, epoch) (see
    ``checkpoint.epoch_batches``). A streaming loader has no file list: no epoch-exact resume."""
    if n:
        batches = checkpoint.epoch_batches(dataset, seed=seed, buffer=n, first_epoch=first_epoch, epochs=epochs,
                                           batch=lambda ds: dist.batch(ds, n, size=batch_size))
        return batches, dist.steps(n, size=batch_size)
    return dist.batch(dataset.shuffle(1024, seed=seed), None, size=batch_size), None


def augmented(batches: tf.data.Dataset, config: RunConfig, *, live_images: bool) -> tf.data.Dataset:
    """Prefetched batches; live images get ``--augment``'s augmentation (cached features
    were augmented before extraction)."""
    import tensorflow as tf

    if live_images and config.augment:
        from clf.data.augmentation import augmentation_layers

        aug = augmentation_layers(config.seed)
        batches = batches.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def compile_for(model: keras.Model, lr: float, dist: Distribution, config: RunConfig,
                total_steps: int | None, multilabel: bool = False) -> dict[str, Any]:
    """Compile ``model`` with the run's optimizer, schedule over ``total_steps`` and loss;
    returns those settings for the record."""
    # Variables made inside the scope (optimizer slots) are mirrored on every replica.
    with dist.strategy.scope(), precision_scope(dist.precision):
        optimizer = optim.make_optimizer(lr, weight_decay=config.weight_decay, schedule=config.schedule,
                                         total_steps=total_steps)
        if multilabel:  # a sigmoid a class: binary cross-entropy over the 0/1 targets
            import keras

            model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing),
                          metrics=["binary_accuracy"])
        else:
            model.compile(optimizer=optimizer, loss=optim.make_loss(config.label_smoothing), metrics=["accuracy"])
    dist.prepare(model)
    return optim.describe(config, lr, total_steps)


# Settings only Keras fit uses; the learning-rate ones still reach fine-tuning when it runs.
FIT_ONLY = ("epochs", "dropout", "patience", "last_epoch")
FIT_AND_FINE_TUNE = ("lr", "schedule", "label_smoothing", "weight_decay")


def solver_ignores(config: RunConfig) -> list[str]:
    """The non-default settings the solved head ignores (``--epochs 60``, ...), for a note."""
    defaults = {f.name: f.default for f in fields(config)}
    names = FIT_ONLY + (() if config.fine_tune_layers else FIT_AND_FINE_TUNE)
    return [f"--{n.replace('_', '-')} {getattr(config, n)}" for n in names if getattr(config, n) != defaults[n]]


def solve_head(trainable: Trainable, layers: tuple[Standardize | None, keras.layers.Dense], num_classes: int,
               class_weight: Any, observer: Observer) -> Fitted:
    """Phase 1 for the default head: the converged, cross-validated linear solution."""
    standardize, dense = layers
    feats = trainable.train_features
    assert feats is not None  # fit_head checked
    observer.phase_start("train")
    labels = feats.labels if trainable.targets is None else trainable.targets  # multi-label: 0/1 rows
    solution = linear_head.solve(linear_head.head_inputs(standardize, feats.features), labels, num_classes,
                                 class_weight=class_weight, n_clean=trainable.n_clean)
    linear_head.write(dense, solution)
    observer.phase_end("train", seconds=solution.seconds, summary=solution.describe())
    return Fitted({}, solution.seconds, class_weight, info=solution.record())


def fit_head(setup: Setup, data: LoadedData, trainable: Trainable, dist: Distribution, *, ckpt: Checkpoint | None,
             run_dir: Path, batch_size: int, observer: Observer) -> Fitted:
    """Phase 1: train the head (or the whole from-scratch model), checkpointing every epoch."""
    config = setup.config
    multilabel = trainable.targets is not None
    if multilabel:  # each label balanced alone (the solver's weights; Keras fit takes none)
        from clf.train.class_weights import label_weights

        class_weight, note = label_weights(config.class_weight, trainable.targets[:trainable.n_clean],
                                           data.bundle.class_names)
    else:
        class_weight, note = choose_class_weights(config.class_weight, trainable.train_counts,
                                                  data.bundle.class_names)
    if note and (multilabel or not noted_imbalance(data.report)):
        observer.note(note)
    # Solved: --solver auto, the built-in softmax head, cached features, not a resumed Keras fit.
    solvable = (config.solver == "auto" and ckpt is None and trainable.train_features is not None
                and trainable.n_fit and (setup.head.plugin, setup.head.name) in SOLVABLE_HEADS)
    layers = linear_head.linear_layers(trainable.head_model) if solvable else None
    if layers is not None and (getattr(layers[1].activation, "__name__", "") == "sigmoid") != multilabel:
        layers = None  # a sigmoid head on single-label data (or the reverse) trains with Keras
    if layers is not None:
        ignored = solver_ignores(config)
        if ignored:
            observer.note(f"{', '.join(ignored)}: not used by the default linear head, which is solved to "
                          f"convergence instead of trained by epochs; pass --solver keras to train it with "
                          f"Keras fit.")
        return solve_head(trainable, layers, data.bundle.num_classes, class_weight, observer)
    if multilabel:
        if class_weight is not None:
            observer.note("Keras fit takes no per-label weights: the labels are not balanced (--solver auto "
                          "balances them).")
        class_weight = None
    first_epoch = ckpt.epoch if ckpt is not None else 0
    train, steps = training_batches(trainable.fit_data, trainable.n_fit, seed=config.seed, batch_size=batch_size,
                                    first_epoch=first_epoch, epochs=config.epochs, dist=dist)
    settings = compile_for(trainable.fit_model, config.lr, dist, config, steps and steps * config.epochs,
                           multilabel=multilabel)
    train = augmented(train, config, live_images=setup.backbone.trainable)
    if ckpt is not None:
        if ckpt.note:
            observer.note(ckpt.note)
        with dist.strategy.scope():  # optimizer slots made here are mirrored too
            checkpoint.restore(trainable.fit_model, ckpt)
        observer.note(f"Resuming {run_dir} after epoch {ckpt.epoch} of {config.epochs}.")
    best = best_epoch(restore=not config.last_epoch, past=checkpoint.best_so_far(ckpt), first_epoch=first_epoch)
    saver = checkpoint.callback(run_dir, phase="train", epochs=config.epochs, config=config.to_dict(),
                                history=ckpt.history if ckpt is not None else None, best=best,
                                data=checkpoint.data_record(data.bundle, config.data))
    callbacks = phase_callbacks(observer, "train", config.epochs, config, setup.host, run_dir,
                                trainable.validation is not None, best, saver)
    observer.phase_start("train", total=config.epochs, unit="epoch")
    t0 = time.perf_counter()
    try:
        if first_epoch < config.epochs:
            quiet_fit(trainable.fit_model, train, validation_data=trainable.validation, epochs=config.epochs,
                      initial_epoch=first_epoch, steps_per_epoch=steps, class_weight=class_weight,
                      callbacks=callbacks)
    except KeyboardInterrupt:
        done = checkpoint.latest(run_dir, "train")
        raise Interrupted(run_dir, done.epoch if done else 0, config.epochs) from None
    best.restore_into(trainable.fit_model)
    seconds = time.perf_counter() - t0
    info = {"solver": "keras_fit", **settings, **best.info()}
    if multilabel:  # no out-of-fold scores to choose by: every class at 0.5
        info["thresholds"] = [0.5] * data.bundle.num_classes
        info["threshold_selection"] = "0.5 (Keras fit; --solver auto chooses per-class thresholds out of fold)"
    observer.phase_end("train", seconds=seconds, summary=describe_fit(info))
    history = {k: [float(v) for v in vs] for k, vs in saver.history_so_far.items()}
    return Fitted(history, seconds, class_weight, info=info)


def trainable_candidates(base: keras.Model) -> list[keras.layers.Layer]:
    """Layers of the backbone that own weights, bottom to top, BatchNormalization excluded."""
    import keras

    return [layer for layer in base.layers
            if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]


def unfreeze_top(base: keras.Model, layers: int | str) -> list[str]:
    """Make the top ``layers`` weight layers (or ``"all"``) trainable, the rest frozen;
    returns the unfrozen layer names."""
    candidates = trainable_candidates(base)
    count = len(candidates) if layers == "all" else int(layers)
    if count > len(candidates):
        raise ConfigError(
            f"--fine-tune-layers {layers} but backbone {base.name!r} has {len(candidates)} "
            f"layers with weights (BatchNormalization excluded); expected at most that. Pass "
            f"--fine-tune-layers {len(candidates)} or 'all'."
        )
    chosen = candidates[len(candidates) - count:]
    chosen_ids = {id(layer) for layer in chosen}
    base.trainable = True
    for layer in base.layers:
        layer.trainable = id(layer) in chosen_ids
    return [layer.name for layer in chosen]


def fine_tune(setup: Setup, data: LoadedData, trainable: Trainable, dist: Distribution, *,
              class_weight: dict[int, float] | None, run_dir: Path, batch_size: int, observer: Observer) -> Fitted:
    """Phase 2: unfreeze the top of the backbone and train end to end on live images."""
    config, classifier = setup.config, trainable.classifier
    names = unfreeze_top(classifier.backbone, config.fine_tune_layers)
    lr = config.fine_tune_lr if config.fine_tune_lr is not None else config.lr / 10
    observer.note(f"Fine-tuning {len(names)} backbone layer(s) ({names[0]} ... {names[-1]}) for "
                  f"{config.fine_tune_epochs} epoch(s) at learning rate {lr:g}; BatchNormalization "
                  f"stays frozen in inference mode.")
    train, steps = training_batches(data.bundle.train, data.n_train, seed=config.seed, batch_size=batch_size,
                                    first_epoch=0, epochs=config.fine_tune_epochs, dist=dist)
    train = augmented(train, config, live_images=True)
    # A new optimizer, warming up from 0 again.
    settings = compile_for(classifier.model, lr, dist, config, steps and steps * config.fine_tune_epochs)
    val = trainable.live_validation
    best = best_epoch(restore=not config.last_epoch, variables=lambda model: model.trainable_weights)
    callbacks = phase_callbacks(observer, "fine_tune", config.fine_tune_epochs, config, setup.host, run_dir,
                                val is not None, best)
    observer.phase_start("fine_tune", total=config.fine_tune_epochs, unit="epoch")
    t0 = time.perf_counter()
    history = quiet_fit(classifier.model, train, validation_data=val, epochs=config.fine_tune_epochs,
                        steps_per_epoch=steps, class_weight=class_weight, callbacks=callbacks)
    best.restore_into(classifier.model)
    seconds = time.perf_counter() - t0
    info = {"layers": len(names), **settings, **best.info()}
    observer.phase_end("fine_tune", seconds=seconds, summary=describe_fit(info))
    return Fitted({f"fine_tune_{k}": [float(v) for v in vs] for k, vs in history.history.items()}, seconds,
                  info=info)


def best_epoch(*, restore: bool, variables: Callable[[Any], list[Any]] = lambda model: model.weights,
               past: tuple[int, float, list[Any]] | None = None, first_epoch: int = 0) -> Any:
    """A callback keeping the weights of the lowest-validation-loss epoch, which
    ``restore_into(model)`` puts back (with ``restore``); ``variables(model)``: what to copy;
    ``past``: ``(epoch, val_loss, values)`` of a resumed run's best epoch, after ``first_epoch``."""
    import keras

    class BestEpoch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            start: tuple[int, float, list[Any] | None] = past or (0, float("inf"), None)
            self.epoch, self.value, self.values = start
            self.epochs_run = first_epoch

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epochs_run = epoch + 1
            value = (logs or {}).get("val_loss")
            if value is not None and float(value) < self.value:
                self.epoch, self.value = epoch + 1, float(value)
                self.values = [v.numpy().copy() for v in variables(self.model)]

        def restore_into(self, model: Any) -> None:
            if restore and self.values is not None and self.epoch != self.epochs_run:
                for var, value in zip(variables(model), self.values):
                    var.assign(value)

        def info(self) -> dict:
            if self.values is None:
                return {"kept_epoch": self.epochs_run, "kept": "last (no validation loss to choose by)",
                        "epochs_run": self.epochs_run}
            kept = self.epoch if restore else self.epochs_run
            return {"kept_epoch": kept, "kept": "best" if restore else "last (--last-epoch)",
                    "best_epoch": self.epoch, "best_val_loss": self.value, "epochs_run": self.epochs_run}

    return BestEpoch()


def phase_callbacks(observer: Observer, phase: str, epochs: int, config: RunConfig, host: PluginHost,
                    run_dir: Path, has_validation: bool, *extra: Any) -> list[Any]:
    """Learning-rate logger, observer, the phase's own callbacks, early stopping on validation
    loss (``best_epoch`` restores the best weights, or Keras itself with ``--last-epoch``),
    then those plugins add (register_callbacks hook)."""
    import keras

    class LearningRate(keras.callbacks.Callback):  # first: history.csv shows the schedule
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    class Reporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            observer.epoch_end(phase, epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})

    stopping: list[Any] = []
    if config.patience and has_validation:
        stopping.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                      restore_best_weights=config.last_epoch))
    made = (factory.make(config, run_dir) for factory in host.callbacks)  # None: sits this run out
    return [LearningRate(), Reporter(), *extra, *stopping, *(cb for cb in made if cb is not None)]


def describe_fit(info: dict[str, Any]) -> str:
    """One line on which epoch's weights a Keras fit kept."""
    if "best_epoch" in info:
        return (f"kept epoch {info['kept_epoch']} of {info['epochs_run']} ({info['kept']}; best validation loss "
                f"{info['best_val_loss']:.4f} at epoch {info['best_epoch']})")
    return f"kept epoch {info['kept_epoch']} of {info['epochs_run']} ({info['kept']})"


def quiet_fit(model: keras.Model, data: tf.data.Dataset, **kwargs: Any) -> keras.callbacks.History:
    """``model.fit`` without Keras' "Your input ran out of data" warning, which datasets of
    unknown length trigger although ``steps_per_epoch`` sets the epoch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        return model.fit(data, verbose=0, shuffle=False, **kwargs)
