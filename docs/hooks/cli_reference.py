"""MkDocs hook: exposes the ``clf`` command as a click command for mkdocs-click.

typer builds its click command on demand (``typer.main.get_command``); mkdocs-click needs a
module attribute, so this registers one (``clf_cli_reference.command``) before any page is
rendered. The CLI reference is therefore generated from the app on every build and cannot
go stale.
"""

import sys
import types


def on_config(config):
    import typer

    from clf.cli import app

    module = types.ModuleType("clf_cli_reference")
    module.command = typer.main.get_command(app)
    sys.modules["clf_cli_reference"] = module
    return config
