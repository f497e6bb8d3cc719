"""The default callback plugin: TensorBoard logs, on with ``--tensorboard``; its factory
returns ``None`` otherwise, so it costs nothing by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TYPE_CHECKING

from clf import ConfigError, hookimpl

if TYPE_CHECKING:
    from clf import RunConfig


def make_tensorboard(config: RunConfig, run_dir: Path) -> Any:
    """Keras TensorBoard callback writing to ``<run folder>/tensorboard`` (--tensorboard)."""
    if not getattr(config, "tensorboard", False):
        return None
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "--tensorboard needs the 'tensorboard' package, which is not installed (tensorflow-cpu "
            "does not bring it). Install it with: pip install 'clf[tensorboard]' (or pip install "
            "tensorboard), or drop --tensorboard."
        )
    # Epoch scalars only: per-batch writes and histograms would slow the small cached-feature loop.
    return keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / "tensorboard"), update_freq="epoch",
                                       histogram_freq=0, write_graph=False)


@hookimpl
def register_callbacks(register: Callable[..., None]) -> None:
    register("tensorboard", make_tensorboard,
             description="TensorBoard logs in <run>/tensorboard (enable with --tensorboard)")
