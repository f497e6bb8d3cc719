"""Two-phase fine-tuning: after the head has trained on cached features, unfreeze the top
of the backbone and train end to end at a lower learning rate.

BatchNormalization layers stay frozen and in inference mode (the exported model calls the
backbone with ``training=False``): their moving statistics were computed on ImageNet and a
small batch of new photos would wreck them, undoing the features the head was trained on.
"""

from __future__ import annotations

from clf.errors import ConfigError


def trainable_candidates(base) -> list:
    """Layers of the backbone that own weights, bottom to top, BatchNormalization excluded."""
    import keras

    return [layer for layer in base.layers
            if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]


def unfreeze_top(base, layers: int | str) -> list[str]:
    """Make the top ``layers`` weight layers (or ``"all"``) trainable; everything else,
    BatchNormalization included, stays frozen. Returns the unfrozen layer names."""
    candidates = trainable_candidates(base)
    if layers != "all" and layers > len(candidates):
        raise ConfigError(
            f"--fine-tune-layers {layers} but backbone {base.name!r} has {len(candidates)} "
            f"layers with weights (BatchNormalization excluded); expected at most that. Pass "
            f"--fine-tune-layers {len(candidates)} or 'all'."
        )
    chosen = candidates if layers == "all" else candidates[len(candidates) - layers:]
    chosen_ids = {id(layer) for layer in chosen}
    base.trainable = True
    for layer in base.layers:
        layer.trainable = id(layer) in chosen_ids
    return [layer.name for layer in chosen]


def fine_tune_lr(config) -> float:
    return config.fine_tune_lr if config.fine_tune_lr is not None else config.lr / 10
