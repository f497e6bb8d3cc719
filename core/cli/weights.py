"""``clf weights list|fetch|verify``: ImageNet weights files offline."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from clf.cli.app import JsonOpt, PluginOpt, _host, app, cli_errors, err, out
from clf.cli.render import esc
from clf.files import keras_cache_dir
from rich.table import Table

weights_app = typer.Typer(no_args_is_help=True, help="ImageNet weights offline: list, fetch, verify.")
app.add_typer(weights_app, name="weights")
MirrorOpt = typer.Option(None, "--mirror", metavar="URL", help="Mirror base URL (default: $CLF_WEIGHTS_MIRROR).")


@weights_app.command("list")
@cli_errors()
def weights_list(names: Optional[List[str]] = typer.Argument(None, help="Backbones (default: all)."),
                 as_json: bool = JsonOpt, plugin: Optional[List[str]] = PluginOpt) -> None:
    """Each backbone's ImageNet weights file: cached or not, file name, size."""
    from clf.artifacts.weights import status_rows

    rows = status_rows(_host(plugin), names or ())
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"ImageNet weights (cache: {esc(str(keras_cache_dir()))})")
    for col in ("backbone", "cached", "file", "size"):
        table.add_column(col, no_wrap=col != "file", overflow="fold")
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f} MB" if r.get("bytes") else ""
        table.add_row(esc(r["backbone"]), "[green]yes[/]" if r["cached"] else "no", esc(r["file"] or r["status"]), size)
    out.print(table)


@weights_app.command("fetch")
@cli_errors()
def weights_fetch(names: List[str] = typer.Argument(..., help="Backbones whose ImageNet weights to download."),
                  mirror: Optional[str] = MirrorOpt, plugin: Optional[List[str]] = PluginOpt) -> None:
    """Download ImageNet weights into the Keras cache (hash-checked where a hash is known,
    and loaded into the backbone before they are cached)."""
    from clf.artifacts.weights import fetch_for

    host = _host(plugin)
    for name in names:
        path = fetch_for(host.backbones.get(name), base=mirror)
        out.print(f"[green]ok[/] {esc(name)}: {esc(str(path))}", highlight=False)


@weights_app.command("verify")
@cli_errors()
def weights_verify(names: Optional[List[str]] = typer.Argument(None, help="Backbones (default: every cached file)."),
                   plugin: Optional[List[str]] = PluginOpt) -> None:
    """Check cached weights files against Keras' known hashes (exit 1 on a mismatch)."""
    from clf.artifacts.weights import check

    host = _host(plugin)
    backbones = [host.backbones.get(n) for n in names] if names else list(host.backbones)
    cache = keras_cache_dir()
    seen, shown, bad = set(), 0, 0
    for bb in backbones:
        wf = bb.imagenet_file
        if wf is None or wf.fname in seen:
            continue
        seen.add(wf.fname)
        status = check(wf, cache / wf.fname)
        if status == "missing" and not names:
            continue
        shown += 1
        bad += status in ("mismatch", "missing")
        colour = {"ok": "green", "unchecked": "yellow"}.get(status, "red")
        out.print(f"[{colour}]{status}[/] {esc(bb.name)}: {esc(str(cache / wf.fname))}", highlight=False)
    if not shown:
        out.print(f"no cached weights files in {esc(str(cache))}", highlight=False)
    if bad:
        err.print(f"[bold red]Error:[/] {bad} file(s) missing or not matching Keras' hash; "
                  f"delete them and run 'clf weights fetch NAME'.", highlight=False)
        raise typer.Exit(1)
