"""What every Keras fit phase optimizes with: Adam or AdamW (``--weight-decay``), a linear
warm-up then cosine learning rate (``--schedule``; warm-up because large first updates wreck
pretrained features), and cross-entropy with optional label smoothing.
"""

from __future__ import annotations

import keras
from typing import Any, TYPE_CHECKING

if TYPE_CHECKING:
    from clf.config import RunConfig

WARMUP_FRACTION = 0.1


def learning_rate(lr: float, schedule: str, total_steps: int | None) -> Any:
    """``lr``, or a warm-up + cosine schedule over ``total_steps`` (None when streaming: constant)."""
    if schedule == "constant" or not total_steps:
        return lr
    warmup = max(1, round(WARMUP_FRACTION * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - warmup), alpha=0.0, warmup_target=lr, warmup_steps=warmup)


def make_optimizer(lr: float, *, weight_decay: float, schedule: str, total_steps: int | None) -> Any:
    rate = learning_rate(lr, schedule, total_steps)
    if not weight_decay:
        return keras.optimizers.Adam(rate)
    optimizer = keras.optimizers.AdamW(rate, weight_decay=weight_decay)
    # Decay shrinks weights toward 0; a bias has no scale to regularise.
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


@keras.saving.register_keras_serializable(package="clf")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against ``(1 - s) * one_hot + s / classes`` (Keras'
    sparse cross-entropy has no label smoothing)."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "smoothed_sparse_categorical_crossentropy",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        onehot = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def make_loss(label_smoothing: float) -> Any:
    return SmoothedSparseCrossentropy(label_smoothing) if label_smoothing else "sparse_categorical_crossentropy"


def describe(config: RunConfig, lr: float, total_steps: int | None) -> dict[str, Any]:
    """The optimisation settings of one fit phase, for the run record."""
    scheduled = config.schedule != "constant" and bool(total_steps)
    return {"optimizer": "AdamW" if config.weight_decay else "Adam", "lr": lr,
            "schedule": (f"linear warm-up over {max(1, round(WARMUP_FRACTION * (total_steps or 0)))} steps, then "
                         f"cosine decay to 0 at step {total_steps}") if scheduled else "constant",
            "weight_decay": config.weight_decay, "label_smoothing": config.label_smoothing}

