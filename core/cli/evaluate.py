"""``clf evaluate`` and ``clf verify``: score a saved model, check an artifact."""

from __future__ import annotations

from typing import Any, List, Optional

import typer
from clf.cli.app import (LogFormatOpt, PluginOpt, TrustOpt, QuietOpt, _close, _host, _notes,
                         _observer, _print_reports, app, cli_errors, err, out)
from clf.cli.render import esc, resolved_format


def unknown_lines(u: dict[str, Any]) -> list[str]:
    """The known score's verdicts (``clf.report.evaluation.unknown_report``) as printed lines."""
    among = (f"accuracy among the accepted {u['accuracy_accepted']:.4f}" if u["accuracy_accepted"] is not None
             else "none accepted")
    lines = [f"[bold]unknown photos[/] ({esc(str(u['score']))} score): {u['known_rejected']:.1%} of the "
             f"{u['known_images']} known images rejected as unknown; {among} ({u['known_accepted']} images)"]
    if "unknown_images" in u:
        separation = (f"AUROC {u['auroc']:.4f}, FPR@95TPR {u['fpr_at_95_tpr']:.4f}" if u["auroc"] is not None
                      else "AUROC and FPR@95TPR need decodable images of both kinds")
        lines.append(f"  --unknown-data: {u['unknown_accepted']:.1%} of {u['unknown_images']} unknown images "
                     f"accepted as known; {separation} (known score, known vs unknown images)")
    return lines


@app.command()
@cli_errors(interrupt=True)
def evaluate(
    model: str = typer.Argument(..., help="A clf run folder or an exported model file in one."),
    data: str = typer.Option(..., "--data", help="A folder of class folders named after the model's classes, or a labels file (.csv path,labels or .jsonl; multi-label models too)."),
    unknown_data: Optional[str] = typer.Option(None, "--unknown-data", help="A folder of photos of none of the model's classes (any layout): how well its known score rejects them (AUROC, FPR@95TPR, share accepted)."),
    output: Optional[str] = typer.Option(None, help="Where to write the report; default <run>/evaluations/<timestamp>-<data>."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    assert_accuracy_at_least: Optional[float] = typer.Option(
        None, "--assert-accuracy-at-least", min=0.0, max=1.0, help="Exit 1 when accuracy is below this (a CI gate)."),
    trust_artifact: bool = TrustOpt,
    plugin: Optional[List[str]] = PluginOpt,
    log_format: str = LogFormatOpt,
    quiet: bool = QuietOpt,
    runtime: str = typer.Option("auto", help="auto: a run folder's fastest verified artifact that runs without TensorFlow (.tflite, .onnx), else its Keras model with the backbone in the runtime its training run chose and checked; tensorflow, tflite or onnx: what runs a Keras model's frozen backbone; openvino: the run's .onnx or .tflite in OpenVINO."),
) -> None:
    """Evaluate a saved model on a labelled folder: accuracy, per-class scores, confusion matrix;
    with a known score, the share of known photos it rejects (and, with --unknown-data, how well it
    rejects unknown ones)."""
    from clf.report.evaluation import check_paths, evaluate_folder

    check_paths(model, data, unknown_data)  # a typo is reported at once, before plugins import TensorFlow
    observer = _observer(log_format, quiet)
    result = evaluate_folder(model, data, output=output, batch_size=batch_size, host=_host(plugin),
                             observer=observer, trust_artifact=trust_artifact, runtime=runtime,
                             unknown_data=unknown_data)
    _close(observer)
    _print_reports({"evaluation": result.report}, log_format, quiet)
    if "unknown" in result.report and resolved_format(out, log_format, quiet) not in ("jsonl", "quiet"):
        for line in unknown_lines(result.report["unknown"]):
            out.print(line, highlight=False, soft_wrap=True)
    _notes(result.notes)
    for path, why in result.unreadable:
        err.print(f"[yellow]skipped[/] {esc(path)}: {esc(why)}", highlight=False)
    if log_format != "jsonl" or quiet:
        out.print(f"saved {esc(', '.join(p.name for p in result.files))} in {esc(result.output)}", highlight=False,
                  soft_wrap=True)
    accuracy = result.report.get("accuracy", result.report.get("exact_match", 0.0))  # multi-label: exact match
    if assert_accuracy_at_least is not None and accuracy < assert_accuracy_at_least:
        err.print(f"[bold red]Accuracy {accuracy:.4f} is below the required {assert_accuracy_at_least:.4f}[/] "
                  f"(--assert-accuracy-at-least).", highlight=False)
        raise typer.Exit(1)


evaluate.metavars = {"unknown_data": "DIR"}  # type: ignore[attr-defined]  # a function attribute tidy_help reads


@app.command()
@cli_errors()
def verify(
    artifact: str = typer.Argument(..., help="An exported artifact (model.keras, saved_model, *.tflite, model.onnx, ...)."),
    data: Optional[List[str]] = typer.Option(None, "--data", help="Held-out images (files or folders); default: those recorded at export."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Keras model to compare with; default: the bundle's .keras or .h5."),
    trust_artifact: bool = TrustOpt,
    plugin: Optional[List[str]] = PluginOpt,
) -> None:
    """Reopen an artifact in its own runtime and compare it with the bundle's Keras model."""
    from clf.artifacts.verify import verify_artifact

    report = verify_artifact(artifact, data=data, reference=reference, host=_host(plugin),
                             trust_artifact=trust_artifact)
    for r in report.results.values():
        mark = "[green]ok[/]" if r.passed else "[bold red]FAILED[/]"
        out.print(f"{mark} {esc(r.describe())}", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
