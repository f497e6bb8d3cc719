"""``clf inspect`` (a run's label issues, errors, heatmaps, outliers, leaks as a web page) and
``clf relabel`` (move the files a fixes list names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional, cast

import typer
from clf.cli.app import JsonOpt, LogFormatOpt, PluginOpt, QuietOpt, _close, _host, _observer, app, cli_errors, err, out
from clf.errors import UsageError
from clf.events import Observer
from rich.markup import escape

SHOWN_ISSUES = 5  # label issues named in the printed summary (the page has them all)


@app.command("inspect")
@cli_errors()
def inspect_command(
    run_dir: str = typer.Argument(..., help="A run folder written by 'clf run'."),
    data: Optional[str] = typer.Option(None, "--data", help="The run's data folder, if it moved since the run."),
    open_page: bool = typer.Option(False, "--open", help="Open the report in the default web browser."),
    as_json: bool = JsonOpt,
    folds: int = typer.Option(5, min=2, help="Folds for the out-of-fold probabilities."),
    solver: str = typer.Option("auto", metavar="auto|keras",
                               help="auto: solve the default linear head's folds (convex); keras: train every "
                                    "fold's head with Adam and the run's epochs."),
    cache: bool = typer.Option(True, help="Read and keep features in the on-disk cache (--no-cache: extract in memory)."),
    plugin: Optional[List[str]] = PluginOpt,
    log_format: str = LogFormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Find suspected label issues, worst errors (with heatmaps), outliers, near duplicates and
    calibration of a run; write RUN_DIR/inspect/index.html."""
    from clf.inspect import inspect_run

    observer = Observer() if as_json else _observer(log_format, quiet)
    result = inspect_run(run_dir, data, folds=folds, solver=solver, cache=cache, host=_host(plugin), observer=observer)
    _close(observer)
    if as_json:
        print(json.dumps(result.findings, default=str))
    else:
        _print_summary(result.findings, result.page)
    if open_page:
        import webbrowser

        if not webbrowser.open(result.page.resolve().as_uri()):
            err.print(f"[yellow]note:[/] no web browser to open; open {result.page} yourself.", highlight=False)


def _print_summary(f: dict[str, Any], page: Path) -> None:
    s = f["summary"]

    def line(text: str) -> None:
        out.print(text, highlight=False, soft_wrap=True)

    accuracy = f"{s['validation_accuracy']:.3f}" if s["validation_accuracy"] is not None else "n/a"
    heads = f"solved heads, L2 {s['oof_l2']:.3g}" if s.get("oof_method") == "solved" else "heads trained with Adam"
    line(f"inspected {s['images']} images ({s['train']} train, {s['validation']} validation); validation "
         f"accuracy {accuracy}, {s['folds']}-fold out-of-fold accuracy {s['oof_accuracy']:.3f} ({heads})")
    line(f"label issues: {s['label_issues']} suspected")
    for issue in f["label_issues"][:SHOWN_ISSUES]:
        line(f"  {escape(issue['file'])}: labelled {escape(issue['label'])}, looks like "
             f"{escape(issue['suggested'])} (p {issue['p_label']:.2f} vs {issue['p_suggested']:.2f})")
    if len(f["label_issues"]) > SHOWN_ISSUES:
        line(f"  and {len(f['label_issues']) - SHOWN_ISSUES} more (all on the page and in findings.json)")
    heat = f["heatmaps"]
    how = {"cam": "class activation maps", "gradcam": "Grad-CAM"}.get(heat["method"], f"none ({heat['reason']})")
    line(f"worst errors: {s['worst_errors']} misclassified validation images; heatmaps: {escape(how)}")
    known = f["known_score"]
    whose = "the run's" if known and known["source"] == "run" else "computed here, the run has none"
    below = (f" below the {known['kind']} known score's threshold ({whose})" if known
             else " (no known score: a class has fewer than 2 training images)")
    line(f"outliers: {s['outliers']}{escape(below)}; near duplicates: {s['near_duplicates']} pair(s), {s['leaks']} across "
         f"train/validation, {s['cross_class_duplicates']} across classes")
    line(f"calibration: expected calibration error {s['ece']:.3f} on {s['validation']} validation images")
    line(f"[green]report[/] {escape(str(page))}")


@app.command()
@cli_errors()
def relabel(
    data: str = typer.Argument(..., help="The data folder the fixes refer to (the run's --data)."),
    fixes: Optional[str] = typer.Argument(None, help="fixes.csv: file,label,new_label (from the 'clf inspect' page)."),
    undo: Optional[str] = typer.Option(None, "--undo", metavar="LOG", help="Put back the moves of an undo log instead."),
    dry_run: bool = typer.Option(True, "--dry-run/--apply", help="Only show what would move (default), or move the files."),
) -> None:
    """Move the files a fixes list names to their new class folders (or DATA/_removed/); never
    deletes or overwrites, and logs every move for --undo."""
    from clf.inspect.relabel import apply_relabel, plan_relabel, plan_undo

    if (fixes is None) == (undo is None):
        raise UsageError("Pass either a fixes list (clf relabel DATA fixes.csv) or --undo LOG, not "
                         f"{'both' if fixes else 'neither'}.")
    plan = plan_relabel(data, fixes) if fixes else plan_undo(data, cast(str, undo))
    for move in plan.moves:
        out.print(f"{'would move' if dry_run else 'move'} {escape(move.source)} -> {escape(move.target)}",
                  highlight=False, soft_wrap=True)
    if plan.done:
        out.print(f"{len(plan.done)} file(s) already at their new place; skipped.", highlight=False)
    if plan.unchanged:
        out.print(f"{len(plan.unchanged)} row(s) keep their label; skipped.", highlight=False)
    if dry_run:
        out.print(f"dry run: {len(plan.moves)} file(s) would move; nothing changed. Add --apply to move them.",
                  highlight=False)
        return
    log = apply_relabel(plan)
    if log is None:
        out.print("nothing to move.", highlight=False)
    else:
        out.print(f"[green]moved[/] {len(plan.moves)} file(s); undo with: clf relabel {escape(data)} "
                  f"--undo {escape(str(log))} --apply", highlight=False, soft_wrap=True)
