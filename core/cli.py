"""The ``clf`` command: a thin typer + rich layer over the Python API.

Only this module prints and chooses exit codes: 0 success, 1 a run failed, 2 bad usage.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines are noise here

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from clf.errors import ClfError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train image classifiers by transfer learning, built from plugins.")
out = Console()
err = Console(stderr=True)

PluginOpt = typer.Option(None, "--plugin", "-p", help="Extra plugin: module name or .py file (repeatable).")

# Set by the app callback for the one command being run: --strict-plugins.
_options = {"strict_plugins": None}


@app.callback()
def _global_options(
    strict_plugins: bool = typer.Option(
        False, "--strict-plugins",
        help="A broken installed plugin is an error instead of a skipped-with-a-warning one "
             "(also: CLF_STRICT_PLUGINS=1)."),
):
    # Global options, given before the command: clf --strict-plugins run ...
    _options["strict_plugins"] = True if strict_plugins else None  # None: CLF_STRICT_PLUGINS decides
    from clf.host.manager import ENV_TRACE, _env_flag

    if _env_flag(ENV_TRACE):
        _trace_to_stderr()


def _trace_to_stderr() -> None:
    """Route the plugin host's trace records (logger 'clf.plugins') to stderr, once."""
    logger = logging.getLogger("clf.plugins")
    if any(isinstance(h, _ErrHandler) for h in logger.handlers):
        return
    logger.addHandler(_ErrHandler())
    logger.setLevel(logging.INFO)


class _ErrHandler(logging.Handler):
    def emit(self, record):
        # Through the rich console, which looks up sys.stderr at print time (CliRunner too).
        err.print(f"plugin trace: {record.getMessage()}", highlight=False, markup=False, soft_wrap=True)


def _host(plugins):
    from rich.markup import escape

    from clf.host.manager import get_host

    host = get_host(plugins or (), strict=_options["strict_plugins"])
    for line in host.warnings:  # one line per broken plugin; everything else goes on
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return host


def _fail(exc: ClfError) -> None:
    err.print(f"[bold red]Error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


LogFormatOpt = typer.Option("auto", "--log-format", help="auto (rich bars on a terminal, plain lines otherwise), rich, plain or jsonl.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only notes, errors and the final line.")


def _observer(log_format: str, quiet: bool):
    from clf.render import LOG_FORMATS, make_observer

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
    from clf.render import print_report, resolved_format

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
    epochs: int = typer.Option(20, help="Head training epochs (on cached features: cheap)."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    image_size: Optional[int] = typer.Option(None, help="Square input size; default: the backbone's."),
    center_crop: str = typer.Option("0.875", metavar="FRACTION", help="Keep this centred fraction of each photo before resizing (0.875: how ImageNet backbones were evaluated); 'none': resize the whole photo."),
    lr: float = typer.Option(1e-3, help="Adam learning rate of the head (fine-tuning: a tenth of it unless --fine-tune-lr)."),
    head: str = typer.Option("softmax", help="Head name (see 'clf heads')."),
    loader: str = typer.Option("directory", help="Data loader name (see 'clf loaders')."),
    export: str = typer.Option("h5", help="Comma-separated exporter names (see 'clf exporters')."),
    output: Optional[str] = typer.Option(None, help="Run folder; default runs/<timestamp>-<backbone>."),
    weights: str = typer.Option("imagenet", help="'imagenet' (Keras cache, then download), 'none', or a weights file."),
    seed: int = typer.Option(42, help="Random seed for the split, initialisation and shuffling."),
    validation_split: float = typer.Option(0.2, help="Validation fraction when the data has no val/ folder."),
    augment: bool = typer.Option(True, help="Shear/zoom/flip training images (the tutorial's augmentation)."),
    dropout: float = typer.Option(0.5, help="Dropout on the features (or hidden layer) before the softmax; 0: none."),
    hidden_units: int = typer.Option(0, help="Width of a hidden ReLU layer in the head (0: none)."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Write TensorBoard logs to <run folder>/tensorboard."),
    strict_data: bool = typer.Option(False, "--strict-data", help="Any bad file in the data is an error instead of being quarantined."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --output run folder."),
    weights_mirror: Optional[str] = typer.Option(None, "--weights-mirror", metavar="URL", help="Base URL of a mirror of the Keras weights files (default: $CLF_WEIGHTS_MIRROR)."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_DIR", help="Continue an interrupted run from its last completed epoch (its own settings are used)."),
    quantize: str = typer.Option("none", help="TFLite quantization: none, float16, dynamic or int8 (int8 calibrates on training images)."),
    verify: bool = typer.Option(True, help="Reopen each artifact in its own runtime and compare with the trained model."),
    augment_copies: int = typer.Option(0, help="Augmented copies of each training image whose features are cached beside the clean one (K more extraction passes)."),
    cache: bool = typer.Option(True, help="Keep extracted features in the on-disk cache (--no-cache: extract in memory only)."),
    cache_dir: Optional[str] = typer.Option(None, help="Feature cache folder; default $CLF_CACHE_DIR or ~/.cache/clf/features."),
    fine_tune_layers: str = typer.Option("0", help="After the head phase, unfreeze the top N backbone weight layers, or 'all' (0: off)."),
    fine_tune_epochs: int = typer.Option(5, help="Epochs of the fine-tuning phase."),
    fine_tune_lr: Optional[float] = typer.Option(None, help="Fine-tuning learning rate; default --lr / 10."),
    class_weight: str = typer.Option("auto", help="'balanced', 'none', or 'auto' (balanced when the largest class has over 3x the smallest)."),
    patience: int = typer.Option(0, help="Stop after this many epochs without a better validation loss and restore the best weights (0: off)."),
    strategy: str = typer.Option("auto", help="tf.distribute strategy: auto, default, mirrored, multiworker or tpu (auto: mirrored when more than one GPU is visible)."),
    precision: str = typer.Option("auto", help="auto, float32, mixed_float16 or mixed_bfloat16 (auto: mixed_float16 on a GPU that supports it, else float32)."),
    plugin: Optional[List[str]] = PluginOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the effective TOML and the dataset summary; train nothing."),
    log_format: str = LogFormatOpt,
    quiet: bool = QuietOpt,
):
    """Train a classifier on a folder of images, evaluate it and export it."""
    from clf.config import RunConfig
    from clf.configfile import config_from_file
    from clf.train.engine import resume as resume_engine
    from clf.train.engine import run as run_engine

    values = dict(backbone=backbone, classes=classes, data=data, epochs=epochs, batch_size=batch_size,
                  image_size=image_size, center_crop=center_crop, lr=lr, head=head, loader=loader, export=export, output=output,
                  weights=weights, seed=seed, plugin=tuple(plugin or ()), validation_split=validation_split,
                  augment=augment, dropout=dropout, hidden_units=hidden_units, tensorboard=tensorboard,
                  strict_data=strict_data, force=force,
                  quantize=quantize, verify=verify,
                  augment_copies=augment_copies, cache=cache, cache_dir=cache_dir,
                  fine_tune_layers=fine_tune_layers, fine_tune_epochs=fine_tune_epochs,
                  fine_tune_lr=fine_tune_lr, class_weight=class_weight, patience=patience,
                  strategy=strategy, precision=precision)

    if weights_mirror:
        os.environ["CLF_WEIGHTS_MIRROR"] = weights_mirror
    observer = None
    try:
        if resume:
            observer = _observer(log_format, quiet)
            result = resume_engine(resume, observer, _host(plugin))
            _close(observer)
            _print_reports(result.evaluation, log_format, quiet)
            out.print(f"[bold green]done[/] run folder: {result.run_dir}", highlight=False, soft_wrap=True)
            return
        if config_file is not None:
            given = {_FIELD.get(k, k): v for k, v in _explicit(ctx, values).items()}
            config = config_from_file(config_file, given)
        else:
            config = RunConfig(**{_FIELD.get(k, k): v for k, v in values.items()})
        if dry_run:
            from clf.train.plan import plan

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
    from clf.report.evaluation import evaluate_folder

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


@app.command()
def doctor(
    data: str = typer.Argument(..., help="The dataset folder (class folders, or train/ val/ folders of them)."),
    strict_data: bool = typer.Option(False, "--strict-data", help="Exit 1 when any bad file is found."),
    min_size: int = typer.Option(16, "--min-size", min=1, help="Smallest usable image side in pixels."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
):
    """Check a dataset: counts per class, bad files, files to convert, duplicates and leakage."""
    from clf.data.doctor import examine

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
    out.print(f"[green]created[/] {root}", highlight=False)
    for f in files:
        out.print(f"  {f.relative_to(root)}", highlight=False)
    out.print(f"next: pip install {root} && clf plugins && python -m pytest {root / 'tests'}",
              highlight=False, soft_wrap=True)


@app.command()
def predict(
    model: str = typer.Argument(..., help="A clf run folder, or an artifact in one (model.h5, model.keras, saved_model, *.tflite, model.onnx)."),
    paths: List[str] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    top_k: int = typer.Option(1, "--top-k", min=1, help="Classes to show per image."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table, csv or json; default: from --output's suffix, else table."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of the terminal."),
    as_json: bool = typer.Option(False, "--json", help="Shortcut for --format json."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Predict class names and probabilities, using the class names saved with the model."""
    from clf.artifacts.predict import collect_images, load_predictor, predict_files
    from clf.artifacts.predict_output import choose_format, to_csv, to_json

    from clf.render import make_observer

    try:
        chosen = choose_format("json" if as_json else fmt, output)
    except ClfError as exc:
        _fail(exc)
    # A progress bar on a terminal only; csv/json output stays clean.
    observer = make_observer(out, "auto", quiet=chosen != "table")
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
    if chosen == "table":
        table = Table(title=f"{len(results)} images ({predictor.path.name}, {predictor.runtime})")
        for col in ("image", "class", "probability"):
            table.add_column(col, overflow="fold")
        for r in results:
            if r.error:
                table.add_row(r.path, f"[red]error: {r.error}[/]", "")
                continue
            top = r.top(predictor.class_names, k)
            table.add_row(r.path, "\n".join(n for n, _ in top), "\n".join(f"{p:.4f}" for _, p in top))
        text = None
    else:
        text = (to_json if chosen == "json" else to_csv)(results, predictor.class_names, k)
    if output:
        try:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                if text is None:
                    Console(file=fh, width=120, no_color=True).print(table)
                else:
                    fh.write(text)
        except OSError as exc:
            err.print(f"[bold red]Error:[/] cannot write --output {output!r}: {exc.strerror}; expected a "
                      f"writable file path. Pass another --output.", highlight=False)
            raise typer.Exit(2)
        err.print(f"wrote {len(results)} predictions to {output}", highlight=False)
    elif text is None:
        out.print(table)
    else:
        sys.stdout.write(text)
    failed = [r for r in results if r.error]
    if failed:
        for r in failed:
            err.print(f"[yellow]unreadable:[/] {r.path}: {r.error}", highlight=False, soft_wrap=True)
        err.print(f"[yellow]{len(failed)} file(s) could not be read; the other {len(results) - len(failed)} "
                  f"were predicted[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def verify(
    artifact: str = typer.Argument(..., help="An exported artifact (model.keras, saved_model, *.tflite, model.onnx, ...)."),
    data: Optional[List[str]] = typer.Option(None, "--data", help="Held-out images (files or folders); default: those recorded at export."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Keras model to compare with; default: the bundle's .keras or .h5."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Reopen an artifact in its own runtime and compare it with the bundle's Keras model."""
    from clf.artifacts.verify import verify_artifact

    try:
        report = verify_artifact(artifact, data=data, reference=reference, host=_host(plugin))
    except ClfError as exc:
        _fail(exc)
    for r in report.results.values():
        mark = "[green]ok[/]" if r.passed else "[bold red]FAILED[/]"
        out.print(f"{mark} {r.describe()}", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


weights_app = typer.Typer(no_args_is_help=True, help="ImageNet weights offline: list, fetch, verify.")
app.add_typer(weights_app, name="weights")
MirrorOpt = typer.Option(None, "--mirror", metavar="URL", help="Mirror base URL (default: $CLF_WEIGHTS_MIRROR).")


@weights_app.command("list")
def weights_list(names: Optional[List[str]] = typer.Argument(None, help="Backbones (default: all)."),
                 as_json: bool = JsonOpt, plugin: Optional[List[str]] = PluginOpt):
    """Each backbone's ImageNet weights file: cached or not, file name, size."""
    from clf.artifacts.weights import cache_dir, status_rows

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
    from clf.artifacts.weights import fetch, lookup

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
    from clf.artifacts.weights import cache_dir, check

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
