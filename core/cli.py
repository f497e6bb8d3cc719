"""The ``clf`` command: a thin typer + rich layer over the Python API.

Only this module prints and chooses exit codes: 0 success, 1 a run failed, 2 bad usage.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines are noise here

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from .errors import ClfError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train image classifiers by transfer learning, built from plugins.")
out = Console()
err = Console(stderr=True)

PluginOpt = typer.Option(None, "--plugin", "-p", help="Extra plugin: module name or .py file (repeatable).")


def _host(plugins):
    from .plugin_manager import get_host

    return get_host(plugins or ())


def _fail(exc: ClfError) -> None:
    err.print(f"[bold red]Error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


class RichObserver:
    """Renders engine events as plain lines (one per epoch, so log files stay readable)."""

    def __init__(self, console: Console):
        self.console = console

    def note(self, text):
        self.console.print(f"[yellow]note:[/] {text}", highlight=False)

    def phase_start(self, phase, total=None, unit=""):
        pass

    def phase_advance(self, phase, amount=1):
        pass

    def phase_end(self, phase, **info):
        c = self.console
        if phase == "doctor":
            report = info["report"]
            bad = report.quarantined
            if bad:
                c.print(f"[yellow]quarantined {len(bad)} file(s)[/] (listed in quarantine.json in the run folder):",
                        highlight=False)
                for b in bad[:20]:
                    c.print(f"  {b.path}: {b.reason}", highlight=False)
                if len(bad) > 20:
                    c.print(f"  ... and {len(bad) - 20} more", highlight=False)
            if report.converted:
                c.print(f"converted {len(report.converted)} file(s) for training "
                        f"({_summarise_changes(report.converted)})", highlight=False)
        elif phase == "data":
            c.print(f"classes: {', '.join(info['class_names'])}", highlight=False)
            for split, counts in info["counts"].items():
                c.print(f"  {split}: {sum(counts.values())} images "
                        f"({', '.join(f'{k} {v}' for k, v in counts.items())})", highlight=False)
        elif phase == "build":
            c.print(f"model: {info['params']:,} parameters; backbone weights: {info['weights']}")
        elif phase == "train":
            c.print(f"trained in {info['seconds']:.1f}s")
        elif phase == "evaluate":
            for k, v in info["metrics"].items():
                c.print(f"{k}: {v:.4f}")
        elif phase == "export":
            c.print(f"[green]saved[/] {info['run_dir']}")
            for name, files in info["artifacts"].items():
                c.print(f"  {name}: {', '.join(Path(f).name for f in files)}")

    def epoch_end(self, phase, epoch, epochs, logs):
        parts = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
        self.console.print(f"{phase} epoch {epoch}/{epochs} {parts}", highlight=False)


@app.command()
def run(
    backbone: str = typer.Option("vgg16", help="Backbone name (see 'clf backbones')."),
    classes: Optional[int] = typer.Option(None, help="Number of classes; checked against the data. Omit to infer."),
    data: str = typer.Option("data", help="Folder of class folders, or of train/ val/ (test/) folders."),
    epochs: int = typer.Option(10, help="Training epochs."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    image_size: Optional[int] = typer.Option(None, help="Square input size; default: the backbone's."),
    lr: float = typer.Option(4e-4, help="Adam learning rate."),
    head: str = typer.Option("softmax", help="Head name (see 'clf heads')."),
    loader: str = typer.Option("directory", help="Data loader name (see 'clf loaders')."),
    export: str = typer.Option("h5", help="Comma-separated exporter names (see 'clf exporters')."),
    output: Optional[str] = typer.Option(None, help="Run folder; default runs/<timestamp>-<backbone>."),
    weights: str = typer.Option("imagenet", help="'imagenet' (Keras cache, then download), 'none', or a weights file."),
    seed: int = typer.Option(42, help="Random seed for the split, initialisation and shuffling."),
    validation_split: float = typer.Option(0.2, help="Validation fraction when the data has no val/ folder."),
    augment: bool = typer.Option(True, help="Shear/zoom/flip training images (the tutorial's augmentation)."),
    dropout: float = typer.Option(0.0, help="Dropout before the softmax layer."),
    hidden_units: int = typer.Option(0, help="Width of a hidden ReLU layer in the head (0: none)."),
    strict_data: bool = typer.Option(False, "--strict-data", help="Any bad file in the data is an error instead of being quarantined."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --output run folder."),
    weights_mirror: Optional[str] = typer.Option(None, "--weights-mirror", metavar="URL", help="Base URL of a mirror of the Keras weights files (default: $CLF_WEIGHTS_MIRROR)."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_DIR", help="Continue an interrupted run from its last completed epoch (its own settings are used)."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Train a classifier on a folder of images and export it."""
    from .config import RunConfig
    from .engine import resume as resume_engine
    from .engine import run as run_engine

    if weights_mirror:
        os.environ["CLF_WEIGHTS_MIRROR"] = weights_mirror
    try:
        if resume:
            result = resume_engine(resume, RichObserver(out))
            out.print(f"[bold green]done[/] run folder: {result.run_dir}")
            return
        config = RunConfig(backbone=backbone, classes=classes, data=data, epochs=epochs,
                           batch_size=batch_size, image_size=image_size, lr=lr, head=head,
                           loader=loader, export=export, output=output, weights=weights, seed=seed,
                           plugins=tuple(plugin or ()), validation_split=validation_split,
                           augment=augment, dropout=dropout, hidden_units=hidden_units,
                           strict_data=strict_data, force=force)
        result = run_engine(config, RichObserver(out), _host(plugin))
    except ClfError as exc:
        _fail(exc)
    out.print(f"[bold green]done[/] run folder: {result.run_dir}")


def _summarise_changes(conversions) -> str:
    from collections import Counter

    kinds = Counter(ch.split(":")[0].split(" (")[0] for c in conversions for ch in c.changes)
    return ", ".join(f"{k}: {n}" for k, n in kinds.most_common())


@app.command()
def doctor(
    data: str = typer.Argument(..., help="The dataset folder (class folders, or train/ val/ folders of them)."),
    strict_data: bool = typer.Option(False, "--strict-data", help="Exit 1 when any bad file is found."),
    min_size: int = typer.Option(16, "--min-size", min=1, help="Smallest usable image side in pixels."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
):
    """Check a dataset: counts per class, bad files, files to convert, duplicates and leakage."""
    from .doctor import examine

    try:
        report = examine(data, min_side=min_size, convert=False)
    except ClfError as exc:
        _fail(exc)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        counts = Table(title=f"{data}: images per class (usable)")
        counts.add_column("class", no_wrap=True)
        splits = list(report.counts)
        for split in splits:
            counts.add_column(split, justify="right")
        for name in sorted({c for s in report.counts.values() for c in s}):
            counts.add_row(name, *[str(report.counts[s].get(name, 0)) for s in splits])
        out.print(counts)
        ratio = report.imbalance()
        if ratio is not None:
            out.print(f"imbalance (largest / smallest training class): {ratio:.1f}x", highlight=False)
        if report.quarantined:
            table = Table(title=f"{len(report.quarantined)} file(s) to quarantine")
            for col in ("file", "kind", "reason"):
                table.add_column(col, overflow="fold")
            for b in report.quarantined:
                table.add_row(b.path, b.kind, b.reason)
            out.print(table)
        if report.converted:
            table = Table(title=f"{len(report.converted)} file(s) converted for training")
            table.add_column("file", overflow="fold")
            table.add_column("conversion", overflow="fold")
            for c in report.converted:
                table.add_row(c.path, "; ".join(c.changes))
            out.print(table)
        for note in report.notes:
            out.print(f"[yellow]note:[/] {note}", highlight=False)
        if not report.quarantined and not report.converted:
            out.print("[green]no problems found[/]")
    if strict_data and report.bad:
        err.print(f"[bold red]Error:[/] --strict-data: {len(report.bad)} bad file(s) found.", highlight=False)
        raise typer.Exit(1)


def _component_table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for col in columns:
        # Short numeric columns never wrap; long text folds rather than being cut off, so a
        # narrow terminal still shows every name whole (if on two lines).
        short = col in ("input size", "params", "features")
        table.add_column(col, no_wrap=short, overflow="fold", min_width=8 if short else None)
    for row in rows:
        table.add_row(*row)
    return table


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
    from .plugin_manager import BUILTIN_PLUGINS

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


JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


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
    """List loaded plugins: origin, version, hooks and what each registered."""
    try:
        host = _host(plugin)
    except ClfError as exc:
        _fail(exc)
    infos = list(host.infos.values())
    if as_json:
        out.print_json(json.dumps([{
            "name": i.name, "origin": i.origin, "builtin": i.builtin, "distribution": i.distribution,
            "version": i.version, "hooks": i.hooks, "components": i.components} for i in infos]))
        return
    rows = [[i.name + (" (built-in)" if i.builtin else ""), i.origin,
             f"{i.distribution or '-'} {i.version or ''}".strip(), ", ".join(i.hooks),
             "; ".join(f"{k}: {', '.join(v)}" for k, v in i.components.items())] for i in infos]
    out.print(_component_table(f"plugins ({len(rows)})", ["plugin", "origin", "distribution", "hooks", "registered"], rows))


@app.command()
def predict(
    model: str = typer.Argument(..., help="A clf run folder or an exported model file in one."),
    paths: List[str] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    top_k: int = typer.Option(1, "--top-k", min=1, help="Classes to show per image."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Predict class names and probabilities, using the class names saved with the model."""
    from .predict import collect_images, load_predictor, predict_files

    try:
        predictor = load_predictor(model, _host(plugin))
        results = predict_files(predictor, collect_images(paths), batch_size)
    except ClfError as exc:
        _fail(exc)
    k = min(top_k, len(predictor.class_names))
    if as_json:
        out.print_json(json.dumps([{"path": r.path, "error": r.error,
                                    "top": [{"class": n, "probability": p} for n, p in r.top(predictor.class_names, k)]
                                    if r.error is None else []} for r in results]))
    else:
        table = Table(title=f"{len(results)} images")
        for col in ("image", "class", "probability"):
            table.add_column(col, overflow="fold")
        for r in results:
            if r.error:
                table.add_row(r.path, f"[red]error: {r.error}[/]", "")
                continue
            top = r.top(predictor.class_names, k)
            table.add_row(r.path, "\n".join(n for n, _ in top), "\n".join(f"{p:.4f}" for _, p in top))
        out.print(table)
    if any(r.error for r in results):
        err.print(f"[yellow]{sum(1 for r in results if r.error)} file(s) could not be read[/]")
        raise typer.Exit(1)


weights_app = typer.Typer(no_args_is_help=True, help="ImageNet weights offline: list, fetch, verify.")
app.add_typer(weights_app, name="weights")
MirrorOpt = typer.Option(None, "--mirror", metavar="URL", help="Mirror base URL (default: $CLF_WEIGHTS_MIRROR).")


@weights_app.command("list")
def weights_list(names: Optional[List[str]] = typer.Argument(None, help="Backbones (default: all)."),
                 as_json: bool = JsonOpt, plugin: Optional[List[str]] = PluginOpt):
    """Each backbone's ImageNet weights file: cached or not, file name, size."""
    from .weights import cache_dir, status_rows

    try:
        rows = status_rows(_host(plugin), names or ())
    except ClfError as exc:
        _fail(exc)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"ImageNet weights (cache: {cache_dir()})")
    for col in ("backbone", "cached", "file", "size"):
        table.add_column(col, no_wrap=col != "file", overflow="fold")
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f} MB" if r.get("bytes") else ""
        table.add_row(r["backbone"], "[green]yes[/]" if r["cached"] else "no", r["file"] or r["status"], size)
    out.print(table)


@weights_app.command("fetch")
def weights_fetch(names: List[str] = typer.Argument(..., help="Backbones whose ImageNet weights to download."),
                  mirror: Optional[str] = MirrorOpt, plugin: Optional[List[str]] = PluginOpt):
    """Download ImageNet weights into the Keras cache (checked against Keras' hash)."""
    from .weights import fetch, lookup

    try:
        host = _host(plugin)
        for name in names:
            path = fetch(lookup(host, name), base=mirror)
            out.print(f"[green]ok[/] {name}: {path}", highlight=False)
    except ClfError as exc:
        _fail(exc)


@weights_app.command("verify")
def weights_verify(names: Optional[List[str]] = typer.Argument(None, help="Backbones (default: every cached file)."),
                   plugin: Optional[List[str]] = PluginOpt):
    """Check cached weights files against Keras' known hashes (exit 1 on a mismatch)."""
    from .weights import cache_dir, check

    try:
        host = _host(plugin)
        backbones = [host.backbones.get(n) for n in names] if names else list(host.backbones)
    except ClfError as exc:
        _fail(exc)
    seen, bad = set(), 0
    for bb in backbones:
        wf = bb.imagenet_file
        if wf is None or wf.fname in seen:
            continue
        seen.add(wf.fname)
        status = check(wf, cache_dir() / wf.fname)
        if status == "missing" and not names:
            continue
        bad += status in ("mismatch", "missing")
        colour = {"ok": "green", "unchecked": "yellow"}.get(status, "red")
        out.print(f"[{colour}]{status}[/] {bb.name}: {cache_dir() / wf.fname}", highlight=False)
    if not seen or (not names and bad == 0 and not any((cache_dir() / f).is_file() for f in seen)):
        out.print(f"no cached weights files in {cache_dir()}")
    if bad:
        err.print(f"[bold red]Error:[/] {bad} file(s) missing or not matching Keras' hash; "
                  f"delete them and run 'clf weights fetch NAME'.", highlight=False)
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
