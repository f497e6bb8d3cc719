"""The Keras callbacks every training phase uses: the learning rate in the logs, progress to
the observer, the best epoch's weights, early stopping, and the ones plugins add through the
``register_callbacks`` hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TYPE_CHECKING

from clf.config import RunConfig
from clf.events import Observer

if TYPE_CHECKING:
    from clf.host.manager import PluginHost


def best_epoch(*, restore: bool, variables: Callable[[Any], list[Any]] = lambda model: model.weights,
               past: tuple[int, float, list[Any]] | None = None, first_epoch: int = 0) -> Any:
    """A callback keeping the weights of the lowest-validation-loss epoch;
    ``restore_into(model)`` after fit puts them back (with ``restore``), as later epochs can
    be worse. ``variables(model)``: what to copy (fine-tuning passes only the trainable weights).
    ``past``: ``(epoch, val_loss, values)`` of a resumed run's best epoch; ``first_epoch``:
    the epochs it had run. ``info()`` says what was kept, for the record."""
    import keras

    class BestEpoch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch: int
            self.value: float
            self.values: list[Any] | None
            self.epoch, self.value, self.values = past if past is not None else (0, float("inf"), None)
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
    """Learning-rate logger, per-epoch logs to the observer, the phase's own callbacks (best
    epoch, checkpoint), early stopping on validation loss (``best_epoch`` restores the best
    weights, or Keras itself with ``--last-epoch``), then the callbacks plugins add through
    the register_callbacks hook (a factory returning None sits this run out)."""
    import keras

    class LearningRate(keras.callbacks.Callback):
        """Adds the learning rate to each epoch's logs (first in the list), so history.csv
        and the progress display show the schedule."""

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
    plugins = [cb for cb in (factory.make(config, run_dir) for factory in host.callbacks) if cb is not None]
    return [LearningRate(), Reporter(), *extra, *stopping, *plugins]
