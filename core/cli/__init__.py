"""The ``clf`` command: a thin typer + rich layer over the Python API, and the only package that
prints and chooses exit codes (docs/reference/exit-codes.md)."""

import atexit
import os
import sys

from clf.cli.app import app, tidy_help

# Importing a command module registers its commands; 'clf --help' lists them in this order.
# isort: off
from clf.cli import run, evaluate, doctor, predict, listing, weights  # noqa: F401
from clf.cli import merge, serve, export, inspect, compare  # noqa: F401
# isort: on

# Every command's --help: value words instead of type tags, panels where a command has them.
for _command in app.registered_commands:
    tidy_help(_command)
if app.registered_callback is not None:
    tidy_help(app.registered_callback)

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except SystemExit as done:  # typer ends every command this way, errors included
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        _exit_now(code)
    _exit_now(0)


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down: freeing a loaded TensorFlow is slow (see
    benchmarks/overhead.py). Exit handlers still run, and every file is already written atomically."""
    if "tensorflow" not in sys.modules or sys.getprofile() or sys.gettrace():
        sys.exit(code)  # nothing slow to tear down, or a profiler that reports at exit
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
