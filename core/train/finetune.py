"""Two-phase fine-tuning: after the head has trained on cached features, unfreeze the top
of the backbone and train end to end at a lower learning rate.

BatchNormalization stays frozen and in inference mode: a small batch of new photos would
wreck its ImageNet statistics, undoing the features the head was trained on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clf.errors import ConfigError
from clf.train.callbacks import best_epoch, phase_callbacks

if TYPE_CHECKING:
    import keras

    from clf.config import RunConfig
    from clf.data.loading import LoadedData
    from clf.events import Observer
    from clf.train.distribute import Distribution
    from clf.train.fit import Trainable
    from clf.train.setup import Setup


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


def fine_tune_lr(config: RunConfig) -> float:
    return config.fine_tune_lr if config.fine_tune_lr is not None else config.lr / 10


@dataclass
class FineTuned:
    history: dict[str, list[float]]  # keys prefixed fine_tune_
    seconds: float
    info: dict = field(default_factory=dict)  # optimizer, schedule, epoch kept: for the record


def fine_tune(setup: Setup, data: LoadedData, trainable: Trainable, dist: Distribution, *,
              class_weight: dict[int, float] | None, run_dir: Path, batch_size: int, observer: Observer) -> FineTuned:
    """Phase 2: unfreeze the top of the backbone and train end to end on live images."""
    from clf.train.fit import augmented, compile_for, describe_fit, quiet_fit, training_batches

    config, classifier = setup.config, trainable.classifier
    names = unfreeze_top(classifier.backbone, config.fine_tune_layers)
    lr = fine_tune_lr(config)
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
    return FineTuned({f"fine_tune_{k}": [float(v) for v in vs] for k, vs in history.history.items()}, seconds,
                     info)
