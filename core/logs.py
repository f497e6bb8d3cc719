"""TensorFlow's log noise, kept out of clf's output unless ``--verbose`` or ``CLF_DEBUG=1``.

- Import-time C++ lines (before absl is initialised, oneDNN): only ``TF_ENABLE_ONEDNN_OPTS=0``
  would silence them, and it slows CPU inference, so TensorFlow is imported with fd 2 pointed
  away (``quiet_tensorflow``), then ``TF_CPP_MIN_LOG_LEVEL=2``.
- Keras/TFLite converter warnings and TFLite's XNNPACK line: their calls run in ``quiet_logs``.

A silenced block that fails has its output replayed to stderr, so errors are never hidden.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
from importlib.machinery import ModuleSpec
import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Iterator, Sequence

ENV_DEBUG = "CLF_DEBUG"  # 1: show everything TensorFlow logs (what --verbose sets)
NOISY_LOGGERS = ("absl", "tensorflow", "h5py")


def verbose() -> bool:
    """True with ``CLF_DEBUG=1`` (``--verbose`` sets it): nothing is silenced."""
    return os.environ.get(ENV_DEBUG, "").strip().lower() in ("1", "true", "yes", "on")


def set_verbose() -> None:
    """Show TensorFlow's own log lines from now on (``--verbose``)."""
    os.environ[ENV_DEBUG] = "1"
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == _LEVEL and _state["set_level"]:
        del os.environ["TF_CPP_MIN_LOG_LEVEL"]  # ours, not the user's: TensorFlow's default again


_LEVEL = "2"  # TensorFlow's C++ INFO and WARNING lines off, errors kept
_state = {"set_level": False}


@contextmanager
def native_stderr_silenced(keep_python: bool = False) -> Iterator[None]:
    """Point fd 2 at a temporary file during the block, hiding native lines; replayed if it raises.
    ``keep_python``: Python's own ``sys.stderr`` (progress bars, error messages) still reaches the
    terminal, for a block that yields to its caller; only for blocks that set up no library
    (whose loggers would keep the stand-in stream)."""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (an embedding host): leave it
        yield
        return
    python_stderr = sys.stderr
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        if keep_python and _writes_fd_2(python_stderr):
            sys.stderr = open(saved, "w", encoding=python_stderr.encoding, errors=python_stderr.errors,
                              closefd=False, buffering=1)
        failed = True
        try:
            yield
            failed = False
        finally:
            with suppress(OSError, ValueError):
                sys.stderr.flush()
            if sys.stderr is not python_stderr:
                sys.stderr.close()
                sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                os.write(2, sink.read())


def _writes_fd_2(stream: object) -> bool:
    """Whether ``stream`` writes to fd 2 (not pytest's or a CliRunner's capture)."""
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Run a block without TensorFlow's native stderr, ``absl``/``tensorflow`` log warnings and
    Python warnings, around calls that log what users cannot act on. Errors still raise, with
    the block's stderr replayed. Does nothing with ``--verbose`` or ``CLF_DEBUG=1``."""
    if verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), native_stderr_silenced():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


_dropped: set[tuple[str, str]] = set()


def drop_message(logger: str, text: str) -> None:
    """Drop ``logger``'s records containing ``text`` from now on (unless --verbose), for a warning
    clf triggers by design (see clf.infer.forward)."""
    if (logger, text) not in _dropped:
        _dropped.add((logger, text))
        logging.getLogger(logger).addFilter(lambda record: verbose() or text not in record.getMessage())


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with native stderr silenced (the pre-absl lines)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def exec_module(self, module: ModuleType) -> None:
        assert module.__spec__ is not None  # a module being imported has its spec
        module.__loader__ = module.__spec__.loader = self.loader
        with native_stderr_silenced():
            self.loader.exec_module(module)


class _QuietImport(importlib.abc.MetaPathFinder):
    """On the first ``import tensorflow``, returns the other finders' spec with its loader wrapped."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # once only; also keeps the lookup below from coming back here
        if verbose():
            return None
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Before TensorFlow is imported: ``TF_CPP_MIN_LOG_LEVEL=2`` unless set, and a silenced import.
    Does nothing with ``CLF_DEBUG=1``; ``set_verbose`` undoes it until TensorFlow loads."""
    if verbose():
        return
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = _LEVEL
        _state["set_level"] = True
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
