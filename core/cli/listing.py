"""``clf backbones|heads|loaders|exporters|plugins`` and ``clf new-plugin``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, List, Optional, TYPE_CHECKING

import typer
from clf.cli.app import JsonOpt, PluginOpt, _host, app, cli_errors, out
from clf.cli.render import esc
from rich import box
from rich.table import Table

if TYPE_CHECKING:
    from clf.host.registry import Backbone, Component


def _list(kind: str, plugins: list[str] | None, as_json: bool,
          table: Callable[[str, list[Any], int], Table] | None = None,
          raw: Callable[[Any], dict[str, Any]] = lambda c: {}) -> None:
    """One table per plugin (named in the title, so rows fit 80 columns), or JSON (every field, as text)."""
    registry = getattr(_host(plugins), kind)
    if as_json:
        rows = [{"name": c.name, "aliases": list(c.aliases), "plugin": c.plugin, "description": c.description,
                 **raw(c)} for c in registry]
        out.print_json(json.dumps(rows, default=str))
        return
    groups: dict[str, list[Any]] = {}
    for c in registry:
        groups.setdefault(_short_plugin(c.plugin), []).append(c)
    for plugin, items in groups.items():
        out.print((table or _component_listing)(f"{kind} from {plugin} ({len(items)})", items, out.width))


def _light_table(title: str) -> Table:
    """Header rule, no borders, one space between columns: the most room for the cells."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                 padding=0, collapse_padding=True)


def _component_listing(title: str, items: list[Component], width: int) -> Table:
    """name | aliases | description: names whole on one line, descriptions wrapped at words."""
    table = _light_table(title)
    table.add_column("name", no_wrap=True)
    table.add_column("aliases", overflow="fold")
    table.add_column("description", ratio=1, overflow="fold")
    for c in items:
        table.add_row(c.name, ", ".join(c.aliases), c.description)
    return table


def _backbone_listing(title: str, items: list[Backbone], width: int) -> Table:
    """All documented columns in 80 columns (aliases under the name, plugin in the title; descriptions at 120+)."""
    table = _light_table(title)
    table.add_column("name", no_wrap=True)
    table.add_column("input\nsize", no_wrap=True)
    table.add_column("params", no_wrap=True, justify="right")
    table.add_column("features", no_wrap=True, justify="right")
    table.add_column("preprocessing", no_wrap=True)
    described = width >= 120
    if described:
        table.add_column("description", ratio=1, overflow="fold")
    for c in items:
        row = [c.name + "".join(f"\nalias {a}" for a in c.aliases), f"{c.input_size[0]}x{c.input_size[1]}",
               _count(c.params), str(c.features or "?"), str(c.preprocess)]
        table.add_row(*row, *([c.description] if described else []))
    return table


def _short_plugin(name: str) -> str:
    from clf.host.manager import BUILTIN_PLUGINS

    if name in BUILTIN_PLUGINS:
        return "built-in"
    return Path(name).name if name.endswith(".py") else name  # a --plugin file: its file name


def _count(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


@app.command()
@cli_errors()
def backbones(plugin: Optional[List[str]] = PluginOpt, as_json: bool = JsonOpt) -> None:
    """List the available backbones: input size, parameters, feature width, preprocessing."""
    _list("backbones", plugin, as_json, _backbone_listing,
          lambda c: {"input_size": list(c.input_size), "params": c.params, "features": c.features,
                     "preprocess": c.preprocess, "min_size": c.min_size})


def _lister(kind: str, what: str) -> None:
    """Register ``clf KIND``, the plain listing of one registry."""

    def command(plugin: Optional[List[str]] = PluginOpt, as_json: bool = JsonOpt) -> None:
        _list(kind, plugin, as_json)

    command.__doc__ = f"List the available {what}."
    app.command(kind)(cli_errors()(command))


for _kind, _what in (("heads", "heads"), ("loaders", "data loaders"), ("exporters", "exporters")):
    _lister(_kind, _what)


@app.command()
@cli_errors()
def plugins(plugin: Optional[List[str]] = PluginOpt, as_json: bool = JsonOpt) -> None:
    """List plugins (built-in ones marked): distribution, version, hooks, what each registered.

    Installed plugins come from the 'clf' entry-point group. CLF_LOAD_PLUGINS=a,b loads only
    those (entry-point or distribution names; empty: none); CLF_TRACE_PLUGINS=1 logs each
    hook call; 'clf --strict-plugins' or CLF_STRICT_PLUGINS=1 stops on a broken plugin
    instead of skipping it with a warning. Guide: docs/plugins.md.
    """
    from clf.host.manager import TABLE_COLUMNS, plugin_rows, plugin_table_rows

    host = _host(plugin)
    if as_json:
        out.print_json(json.dumps(plugin_rows(host)))
        return
    rows = plugin_table_rows(host)
    table = _light_table(f"plugins ({len(rows)})")
    for col in TABLE_COLUMNS:
        # Plugin and hook names whole; what each registered (and errors) wraps at words.
        whole = col in ("plugin", "hooks")
        table.add_column(col, no_wrap=whole, overflow="fold", ratio=None if whole else 1)
    for row in rows:
        table.add_row(*row)
    out.print(table)


@app.command("new-plugin")
@cli_errors()
def new_plugin(
    name: str = typer.Argument(..., help="Component name, e.g. my-cnn (package clf-my-cnn)."),
    kind: str = typer.Option(..., "--kind", help="backbone, head, loader or exporter."),
    output: str = typer.Option(".", "--output", "-o", help="Folder to create the package in."),
) -> None:
    """Write a ready plugin package: pyproject with the entry point, module, README, test."""
    from clf.host.scaffold import create_plugin, pip_target

    files = create_plugin(name, kind, output)
    root = files[0].parent
    out.print(f"[green]created[/] {esc(root)}", highlight=False)
    for f in files:
        out.print(f"  {esc(f.relative_to(root))}", highlight=False)
    out.print(f"next: pip install {esc(pip_target(root))} && clf plugins && python -m pytest {esc(root / 'tests')}",
              highlight=False, soft_wrap=True)
