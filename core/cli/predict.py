"""``clf predict``: class names and probabilities for image files."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer
from clf.cli.app import (
    PluginOpt,
    _close,
    _fail,
    _host,
    app,
    err,
    out,
)
from clf.errors import ClfError
from rich.console import Console
from rich.table import Table


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
    runtime: str = typer.Option("auto", help="What runs the frozen backbone of a Keras model: auto (the runtime its training run chose and checked, when cached), tensorflow, tflite or onnx."),
):
    """Predict class names and probabilities, using the class names saved with the model."""
    from clf.artifacts.predict import collect_images, load_predictor, predict_files
    from clf.artifacts.predict_output import choose_format, to_csv, to_json
    from clf.cli.render import make_observer

    try:
        chosen = choose_format("json" if as_json else fmt, output)
    except ClfError as exc:
        _fail(exc)
    # A progress bar on a terminal only; csv/json output stays clean.
    observer = make_observer(out, "auto", quiet=chosen != "table")
    try:
        predictor = load_predictor(model, _host(plugin), runtime=runtime)
        files = collect_images(paths)
        observer.phase_start("predict", total=len(files), unit="image")
        results = predict_files(predictor, files, batch_size,
                                progress=lambda n: observer.phase_advance("predict", n))
        observer.phase_end("predict")
    except ClfError as exc:
        _close(observer)
        _fail(exc)
    _close(observer)
    for note in predictor.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
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
