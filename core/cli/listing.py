"""``clf backbones|heads|loaders|exporters|plugins`` and ``clf new-plugin``."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from clf.cli.app import (
    JsonOpt,
    PluginOpt,
    _component_table,
    _fail,
    _host,
    app,
    out,
)
from clf.cli.render import esc
from clf.errors import ClfError


def _list(kind: str, plugins, as_json: bool, extra_cols=(), extra=lambda c, raw=False: []) -> None:
    try:
        registry = getattr(_host(plugins), kind)
    except ClfError as exc:
        _fail(exc)
    if as_json:
        rows = []
        for c in registry:
            row = {"name": c.name, "aliases": list(c.aliases), "plugin": c.plugin, "description": c.description}
            row.update(extra(c, raw=True) or {})
            rows.append(row)
        out.print_json(json.dumps(rows))
        return
    rows = [[c.name, ", ".join(c.aliases), *extra(c), _short_plugin(c.plugin), c.description] for c in registry]
    out.print(_component_table(f"{kind} ({len(rows)})", ["name", "aliases", *extra_cols, "plugin", "description"], rows))


def _short_plugin(name: str) -> str:
    from clf.host.manager import BUILTIN_PLUGINS

    return "built-in" if name in BUILTIN_PLUGINS else name


def _count(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _backbone_cols(c, raw=False):
    if raw:
        return {"input_size": list(c.input_size), "params": c.params, "features": c.features,
                "preprocess": c.preprocess, "min_size": c.min_size}
    return [f"{c.input_size[0]}x{c.input_size[1]}", _count(c.params)]




@app.command()
def backbones(plugin: Optional[List[str]] = PluginOpt, as_json: bool = JsonOpt):
    """List the available backbones."""
    _list("backbones", plugin, as_json, ("input size", "params"), _backbone_cols)


@app.command()
def heads(plugin: Optional[List[str]] = PluginOpt, as_json: bool = JsonOpt):
    """List the available heads."""
    _list("heads", plugin, as_json)


@app.command()
def loaders(plugin: Optional[List[str]] = PluginOpt, as_json: bool = JsonOpt):
    """List the available data loaders."""
    _list("loaders", plugin, as_json)


@app.command()
def exporters(plugin: Optional[List[str]] = PluginOpt, as_json: bool = JsonOpt):
    """List the available exporters."""
    _list("exporters", plugin, as_json)


@app.command()
def plugins(plugin: Optional[List[str]] = PluginOpt, as_json: bool = JsonOpt):
    """List plugins (built-in ones marked): distribution, version, hooks, what each registered.

    Installed plugins come from the 'clf' entry-point group. CLF_LOAD_PLUGINS=a,b loads only
    those (entry-point or distribution names; empty: none); CLF_TRACE_PLUGINS=1 logs each
    hook call; 'clf --strict-plugins' or CLF_STRICT_PLUGINS=1 stops on a broken plugin
    instead of skipping it with a warning. Guide: docs/plugins.md.
    """
    from clf.host.listing import TABLE_COLUMNS, plugin_rows, plugin_table_rows

    try:
        host = _host(plugin)
    except ClfError as exc:
        _fail(exc)
    if as_json:
        out.print_json(json.dumps(plugin_rows(host)))
        return
    rows = plugin_table_rows(host)
    table = _component_table(f"plugins ({len(rows)})", TABLE_COLUMNS, rows)
    for col in table.columns[1:]:
        col.no_wrap, col.overflow = False, "fold"  # the registered names and errors can be long
    out.print(table)


@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(..., help="Component name, e.g. my-cnn (package clf-my-cnn)."),
    kind: str = typer.Option(..., "--kind", help="backbone, head, loader or exporter."),
    output: str = typer.Option(".", "--output", "-o", help="Folder to create the package in."),
):
    """Write a ready plugin package: pyproject with the entry point, module, README, test."""
    from clf.host.scaffold import create_plugin

    try:
        files = create_plugin(name, kind, output)
    except ClfError as exc:
        _fail(exc)
    root = files[0].parent
    out.print(f"[green]created[/] {esc(root)}", highlight=False)
    for f in files:
        out.print(f"  {esc(f.relative_to(root))}", highlight=False)
    out.print(f"next: pip install {esc(root)} && clf plugins && python -m pytest {esc(root / 'tests')}",
              highlight=False, soft_wrap=True)
