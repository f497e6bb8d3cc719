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


LogFormatOpt = typer.Option("auto", "--log-format", help="auto (rich bars on a terminal, plain lines otherwise), rich, plain or jsonl.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only notes, errors and the final line.")


def _observer(log_format: str, quiet: bool):
    from .render import LOG_FORMATS, make_observer

    if log_format not in LOG_FORMATS:
        err.print(f"[bold red]Error:[/] Invalid --log-format {log_format!r}: expected one of "
                  f"{', '.join(LOG_FORMATS)}. Pass one of them.", highlight=False)
        raise typer.Exit(2)
    return make_observer(out, log_format, quiet)


def _close(observer) -> None:
    if hasattr(observer, "close"):
        observer.close()


def _explicit(ctx: typer.Context, values: dict) -> dict:
    """The options given on the command line (not defaults), so they override --config."""
    # Compared by name: typer >= 0.26 vendors click, so its ParameterSource enum moved.
    def given(name):
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {k: v for k, v in values.items() if given(k)}


def _print_reports(reports: dict, log_format: str, quiet: bool) -> None:
    from .render import print_report, resolved_format

    fmt = resolved_format(out, log_format, quiet)
    if fmt == "jsonl":
        print(json.dumps({"event": "report", "reports": reports}, default=str), flush=True)
    elif fmt != "quiet":
        for name, report in reports.items():
            print_report(out, report, name)


# Option name -> RunConfig field, for the flags whose names differ.
_FIELD = {"plugin": "plugins"}


@app.command()
def run(
    ctx: typer.Context,
    config_file: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file of run options; flags given here override it."),
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
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Write TensorBoard logs to <run folder>/tensorboard."),
    strategy: str = typer.Option("auto", help="tf.distribute strategy: auto, default, mirrored, multiworker or tpu (auto: mirrored when more than one GPU is visible)."),
    precision: str = typer.Option("auto", help="auto, float32, mixed_float16 or mixed_bfloat16 (auto: mixed_float16 on a GPU that supports it, else float32)."),
    plugin: Optional[List[str]] = PluginOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the effective TOML and the dataset summary; train nothing."),
    log_format: str = LogFormatOpt,
    quiet: bool = QuietOpt,
):
    """Train a classifier on a folder of images, evaluate it and export it."""
    from .config import RunConfig
    from .configfile import config_from_file
    from .engine import run as run_engine

    values = dict(backbone=backbone, classes=classes, data=data, epochs=epochs, batch_size=batch_size,
                  image_size=image_size, lr=lr, head=head, loader=loader, export=export, output=output,
                  weights=weights, seed=seed, plugin=tuple(plugin or ()), validation_split=validation_split,
                  augment=augment, dropout=dropout, hidden_units=hidden_units, tensorboard=tensorboard,
                  strategy=strategy, precision=precision)
    observer = None
    try:
        if config_file is not None:
            given = {_FIELD.get(k, k): v for k, v in _explicit(ctx, values).items()}
            config = config_from_file(config_file, given)
        else:
            config = RunConfig(**{_FIELD.get(k, k): v for k, v in values.items()})
        if dry_run:
            from .dryrun import plan

            summary = plan(config, _host(config.plugins))
            print(summary["toml"], end="", flush=True)  # plain print: rich must not re-wrap the TOML
            lines = [f"# backbone {summary['backbone']} at {summary['image_size'][0]}x{summary['image_size'][1]}, "
                     f"head {summary['head']}, loader {summary['loader']}, export {', '.join(summary['exporters'])}",
                     f"# classes ({len(summary['class_names'])}): {', '.join(summary['class_names'])}"]
            lines += [f"# {split}: {sum(c.values())} images ({', '.join(f'{k} {v}' for k, v in c.items())})"
                      for split, c in summary["counts"].items()]
            print("\n".join(lines + ["# dry run: nothing trained or written"]), flush=True)
            return
        observer = _observer(log_format, quiet)
        result = run_engine(config, observer, _host(config.plugins))
    except ClfError as exc:
        _close(observer)
        _fail(exc)
    _close(observer)
    _print_reports(result.evaluation, log_format, quiet)
    if log_format != "jsonl" or quiet:
        out.print(f"[bold green]done[/] run folder: {result.run_dir}", highlight=False, soft_wrap=True)


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="A clf run folder or an exported model file in one."),
    data: str = typer.Option(..., "--data", help="A folder of class folders named after the model's classes."),
    output: Optional[str] = typer.Option(None, help="Where to write the report; default <run>/evaluations/<timestamp>-<data>."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    assert_accuracy_at_least: Optional[float] = typer.Option(
        None, "--assert-accuracy-at-least", min=0.0, max=1.0, help="Exit 1 when accuracy is below this (a CI gate)."),
    plugin: Optional[List[str]] = PluginOpt,
    log_format: str = LogFormatOpt,
    quiet: bool = QuietOpt,
):
    """Evaluate a saved model on a labelled folder: accuracy, per-class scores, confusion matrix."""
    from .evaluation import evaluate_folder

    observer = _observer(log_format, quiet)
    try:
        result = evaluate_folder(model, data, output=output, batch_size=batch_size, host=_host(plugin),
                                 observer=observer)
    except ClfError as exc:
        _close(observer)
        _fail(exc)
    _close(observer)
    _print_reports({"evaluation": result.report}, log_format, quiet)
    for path, why in result.unreadable:
        err.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)
    if log_format != "jsonl" or quiet:
        out.print(f"saved {', '.join(p.name for p in result.files)} in {result.output}", highlight=False,
                  soft_wrap=True)
    accuracy = result.report["accuracy"]
    if assert_accuracy_at_least is not None and accuracy < assert_accuracy_at_least:
        err.print(f"[bold red]Accuracy {accuracy:.4f} is below the required {assert_accuracy_at_least:.4f}[/] "
                  f"(--assert-accuracy-at-least).", highlight=False)
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

    from .render import make_observer

    # A progress bar on a terminal only; --json output stays clean.
    observer = make_observer(out, "auto", quiet=as_json)
    try:
        predictor = load_predictor(model, _host(plugin))
        files = collect_images(paths)
        observer.phase_start("predict", total=len(files), unit="image")
        results = predict_files(predictor, files, batch_size,
                                progress=lambda n: observer.phase_advance("predict", n))
        observer.phase_end("predict")
    except ClfError as exc:
        _close(observer)
        _fail(exc)
    _close(observer)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
