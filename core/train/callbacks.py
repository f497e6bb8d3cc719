"""The Keras callbacks every training phase uses: progress to the observer, early
stopping, and the ones plugins add through the ``register_callbacks`` hook."""

from __future__ import annotations

from pathlib import Path

from clf.config import RunConfig
from clf.events import Observer


def epoch_reporter(observer: Observer, phase: str, epochs: int):
    """Bridges Keras' per-epoch logs to the observer."""
    import keras

    class Reporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            observer.epoch_end(phase, epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})

    return Reporter()


def plugin_callbacks(host, config: RunConfig, run_dir: Path) -> list:
    """The callbacks plugins add through the register_callbacks hook (None: sits this run out)."""
    made = (factory.make(config, run_dir) for factory in host.callbacks)
    return [cb for cb in made if cb is not None]


def stopping(config: RunConfig, has_validation: bool) -> list:
    """Early stopping on validation loss with the best epoch's weights restored."""
    if not config.patience or not has_validation:
        return []
    import keras

    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                          restore_best_weights=True)]


def phase_callbacks(observer: Observer, phase: str, epochs: int, config: RunConfig, host, run_dir: Path,
                    has_validation: bool, *extra) -> list:
    """Progress, then the phase's own callbacks (e.g. the checkpoint saver), then early
    stopping and the plugins' callbacks."""
    return [epoch_reporter(observer, phase, epochs), *extra, *stopping(config, has_validation),
            *plugin_callbacks(host, config, run_dir)]
