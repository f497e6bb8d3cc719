"""The ``clf`` command: a thin typer + rich layer over the Python API.

Only this package prints and chooses exit codes (the table in the README). One module per
command group; each registers its commands on the shared ``app`` when imported, in the
order ``clf --help`` lists them.
"""

from clf.cli.app import app

# Importing a command module registers its commands; 'clf --help' lists them in this order.
# isort: off
from clf.cli import run  # noqa: E402,F401
from clf.cli import evaluate, doctor, predict, listing, weights  # noqa: E402,F401
from clf.cli import merge  # noqa: E402,F401
from clf.cli import serve  # noqa: E402,F401
from clf.cli import inspect  # noqa: E402,F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    app()
