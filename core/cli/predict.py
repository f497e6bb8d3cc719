"""``clf predict``: class names and probabilities for image files."""

from __future__ import annotations

import io
import sys
from typing import List, Optional, Sequence, TYPE_CHECKING

import typer
from clf.cli.app import (PluginOpt, TrustOpt, _close, _host, _notes, _observer, app, cli_errors,
                         err, out)
from clf.cli.render import esc
from clf.errors import UsageError
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from clf.artifacts.predict import Prediction, Predictor


@app.command()
@cli_errors(interrupt=True)
def predict(
    model: str = typer.Argument(..., help="A clf run folder, or an artifact in one (model.h5, model.keras, saved_model, *.tflite, model.onnx)."),
    paths: List[str] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    top_k: int = typer.Option(1, "--top-k", min=1, help="Classes to show per image."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table, csv or json; default: from --output's suffix, else table."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of the terminal (never over a run's files)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    as_json: bool = typer.Option(False, "--json", help="Shortcut for --format json."),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: predict only part K (0-based) of N, as CSV or JSON with each file's position; join the parts with clf merge-predictions."),
    trust_artifact: bool = TrustOpt,
    plugin: Optional[List[str]] = PluginOpt,
    runtime: str = typer.Option("auto", help="auto: a run folder's fastest verified artifact that runs without TensorFlow (.tflite, .onnx), else its Keras model with the backbone in the runtime its training run chose and checked; tensorflow, tflite or onnx: what runs a Keras model's frozen backbone; openvino: the run's .onnx or .tflite in OpenVINO."),
    unknown: str = typer.Option("auto", "--unknown", help="auto: a photo below the model's known-score threshold is 'unknown' (shown with the class it would be, and its known score); off: ignore the score, answer and columns as for a model without one."),
) -> None:
    """Predict class names and probabilities, using the class names saved with the model."""
    from clf.artifacts.predict import collect_images, load_predictor, predict_files, resolve_artifact, unknown_rule
    from clf.artifacts.predict_output import choose_format, to_csv, to_json, write_output
    from clf.data.guardrails import check_output_file
    from clf.artifacts.shards import ANSWERED_BY, model_fingerprint, parse_shard, shard_files

    chosen = choose_format("json" if as_json else fmt, output)
    target = check_output_file(output, overwrite) if output else None  # before any slow work
    part = parse_shard(shard, chosen) if shard else None
    # The paths before plugins import TensorFlow (seconds): a typo is reported at once.
    resolve_artifact(model)
    images = collect_images(paths)
    # A progress bar on a terminal only; csv/json output stays clean.
    observer = _observer("auto", quiet=chosen != "table")
    predictor = load_predictor(model, _host(plugin), fmt="auto", trust=trust_artifact, runtime=runtime, unknown=unknown)
    # A part records which model predicted it, so that the merge can refuse a mix.
    model_id = model_fingerprint(predictor.path, predictor.labels, not trust_artifact) if part else ""
    files, columns = shard_files(images, part, model_id)
    observer.phase_start("predict", total=len(files), unit="image")
    results = predict_files(predictor, files, batch_size,
                            progress=lambda n: observer.phase_advance("predict", n))
    observer.phase_end("predict")
    _close(observer)
    _notes(predictor.notes)
    k = min(top_k, len(predictor.class_names))
    if chosen == "table":
        table, text = _table(results, predictor, k), None
    else:
        if chosen == "json":
            columns = {**(columns or {}), ANSWERED_BY: [answered_by(predictor)] * len(results)}
        text = (to_json if chosen == "json" else to_csv)(results, predictor.class_names, k, columns,
                                                         known_score=unknown_rule(predictor) is not None)
    if target is not None:
        if text is None:
            buf = io.StringIO()
            Console(file=buf, width=120, no_color=True, emoji=False).print(table)
            text = buf.getvalue()
        try:
            write_output(target, text)
        except OSError as exc:
            raise UsageError(f"cannot write --output {output!r}: {exc.strerror or exc}; expected a writable "
                             f"file path. Pass another --output.") from None
        err.print(f"wrote {len(results)} predictions to {esc(output)}", highlight=False)
    elif text is None:
        out.print(table)
    else:
        sys.stdout.write(text)
    failed = [r for r in results if r.error]
    if failed:
        for r in failed:
            err.print(f"[yellow]unreadable:[/] {esc(r.path)}: {esc(r.error)}", highlight=False, soft_wrap=True)
        err.print(f"[yellow]{len(failed)} file(s) could not be read; the other {len(results) - len(failed)} "
                  f"were predicted[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def answered_by(predictor: Predictor) -> str:
    """Which artifact answered, in which runtime: ``model.tflite, litert``."""
    return f"{predictor.path.name}, {predictor.runtime}"


def _table(results: Sequence[Prediction], predictor: Predictor, k: int) -> Table:
    """The terminal table: each image's top ``k`` classes and probabilities, or its error; with a
    known score, its column, and an unknown photo as "unknown (would be: CLASS)"."""
    from clf.artifacts.predict import unknown_rule

    known = unknown_rule(predictor) is not None
    multi = any(r.labels is not None for r in results)  # multi-label: the labels over their thresholds first
    table = Table(title=f"{len(results)} images ({esc(answered_by(predictor))})")
    for col in ("image", *(("labels",) if multi else ()), "class", "probability", *(("known score",) if known else ())):
        table.add_column(col, overflow="fold")
    for r in results:
        if r.error:
            table.add_row(esc(r.path), *([""] if multi else []), f"[red]error: {esc(r.error)}[/]", "",
                          *([""] if known else []))
            continue
        if multi:
            top = r.top(predictor.class_names, k)
            table.add_row(esc(r.path), ", ".join(esc(n) for n in r.labels or []) or "[yellow](none)[/]",
                          "\n".join(esc(n) for n, _ in top), "\n".join(f"{p:.4f}" for _, p in top))
            continue
        top = r.top(predictor.class_names, k)
        names = [esc(n) for n, _ in top]
        if r.unknown:
            names[0] = f"[yellow]unknown[/] (would be: {names[0]})"
        score = [f"{r.known_score:.4f}"] if known and r.known_score is not None else [""] if known else []
        table.add_row(esc(r.path), "\n".join(names), "\n".join(f"{p:.4f}" for _, p in top), *score)
    return table


predict.metavars = {"unknown": "auto|off"}  # type: ignore[attr-defined]  # a function attribute tidy_help reads
