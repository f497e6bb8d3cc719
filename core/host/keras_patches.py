"""Every private Keras attribute clf replaces, and ``problems()``, a check that each still has the
shape clf expects (tests/test_keras_patches.py runs it): ``file_utils.get_file``, since Keras has
no public hook for the weights' URL or cache (clf.artifacts.weights), and
``Model._maybe_symbolic_build``, where ``fit`` under MultiWorkerMirroredStrategy fails
(keras-team/keras#20585; clf.train.distribute)."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import keras

# An application module that downloads through file_utils, checked to still do so.
APPLICATION_MODULE = "keras.src.applications.mobilenet_v2"


@contextmanager
def replaced_get_file(replacement: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """While active, Keras Applications download through ``replacement``; yields the original."""
    from keras.src.utils import file_utils

    original = file_utils.get_file
    file_utils.get_file = replacement
    try:
        yield original
    finally:
        file_utils.get_file = original


def replace_symbolic_build(model: keras.Model, build: Callable[..., None]) -> None:
    """``model`` (only it) runs ``build(iterator=None, data_batch=None)`` where Keras' ``fit``
    would run ``_maybe_symbolic_build``; ``build`` may call ``model._symbolic_build``."""
    model._maybe_symbolic_build = build  # type: ignore[method-assign]  # one instance, on purpose


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def problems() -> list[str]:
    """What no longer matches clf's replacements' assumptions, one line each."""
    import importlib

    import keras
    from keras.src.utils import file_utils

    found = []
    get_file = getattr(file_utils, "get_file", None)
    if get_file is None:
        found.append("keras.src.utils.file_utils.get_file is gone")
    else:
        params = _parameters(get_file)
        if params[:2] != ["fname", "origin"] or not {"file_hash", "cache_subdir"} <= set(params):
            found.append(f"keras.src.utils.file_utils.get_file takes {params}; clf expects fname, origin, "
                         f"..., file_hash, cache_subdir")
    application = importlib.import_module(APPLICATION_MODULE)
    if getattr(application, "file_utils", None) is not file_utils:
        found.append(f"{APPLICATION_MODULE} no longer downloads through keras.src.utils.file_utils.get_file")
    for name, expected in (("_maybe_symbolic_build", ["self", "iterator", "data_batch"]),
                           ("_symbolic_build", None)):
        method = getattr(keras.Model, name, None)
        if method is None:
            found.append(f"keras.Model.{name} is gone")
        elif expected is not None and _parameters(method) != expected:
            found.append(f"keras.Model.{name} takes {_parameters(method)}; clf expects {expected}")
        elif expected is None and "data_batch" not in _parameters(method):
            found.append(f"keras.Model.{name} has no data_batch parameter")
    return found
