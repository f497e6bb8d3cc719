"""The preprocessing modes a saved model can name: mode name -> ``fn(x) -> x``. Saved models
store the name, so they reload wherever it is registered. No Keras import: backbones register
modes on every command, listings included.
"""

from __future__ import annotations

from typing import Any, Callable

from clf.errors import PluginError

_MODES: dict[str, Callable] = {}


def register_preprocess(name: str, fn: Callable, *, replace: bool = False) -> None:
    """Make ``fn(x) -> x`` (float RGB 0-255 in) available as preprocessing ``name``.
    ``replace``: the caller owns ``name`` (a rebuilt plugin host re-imports plugin files)."""
    if not callable(fn):
        raise PluginError(f"Preprocessing mode {name!r} must be a function fn(x) -> x; got {fn!r}.")
    if name in _MODES and _MODES[name] is not fn and not replace:
        raise PluginError(
            f"Preprocessing mode {name!r} is already registered; expected a new name. "
            f"Pick another name for the plugin's preprocessing."
        )
    _MODES[name] = fn


def preprocess_modes() -> list[str]:
    return sorted(_MODES)


def get_preprocess(name: str) -> Callable:
    try:
        return _MODES[name]
    except KeyError:
        raise PluginError(
            f"Unknown preprocessing mode {name!r}. Available: {', '.join(preprocess_modes())}. "
            f"Import the plugin that registers it before loading the model."
        ) from None


def _keras_app_preprocess(module: str) -> Callable:
    def preprocess(x: Any) -> Any:
        import keras  # at call time: importing clf must not import Keras

        return getattr(keras.applications, module).preprocess_input(x)

    preprocess.__name__ = f"{module}_preprocess_input"
    return preprocess


for _module in ("vgg16", "vgg19", "resnet", "resnet_v2", "inception_v3", "inception_resnet_v2",
                "xception", "mobilenet", "mobilenet_v2", "mobilenet_v3", "densenet", "nasnet",
                "efficientnet", "efficientnet_v2", "convnext"):
    register_preprocess(_module, _keras_app_preprocess(_module))
register_preprocess("none", lambda x: x)
register_preprocess("rescale", lambda x: x / 255.0)
