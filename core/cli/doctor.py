"""``clf doctor``: check a dataset before training."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from clf.cli.app import app, cli_errors, err, out
from clf.cli.render import esc
from rich.table import Table


@app.command()
@cli_errors()
def doctor(
    data: str = typer.Argument(..., help="The dataset folder (class folders, or train/ val/ folders of them), or a labels file (.csv path,labels or .jsonl)."),
    strict_data: bool = typer.Option(False, "--strict-data", help="Exit 1 when any bad file is found."),
    min_size: int = typer.Option(16, "--min-size", min=1, help="Smallest usable image side in pixels."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Check a dataset: counts per class, bad files, files to convert, duplicates and leakage."""
    from clf.data.doctor import examine, examine_labels_file
    from clf.data.labels_file import is_labels_file

    # a labels file (path,labels rows): counts per label; its paths relative to its folder
    report = (examine_labels_file if is_labels_file(data) else examine)(data, min_side=min_size, convert=False)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        counts = Table(title=f"{esc(data)}: images per class (usable)")
        counts.add_column("class", no_wrap=True)
        splits = list(report.counts)
        for split in splits:
            counts.add_column(split, justify="right")
        for name in sorted({c for s in report.counts.values() for c in s}):
            counts.add_row(esc(name), *[str(report.counts[s].get(name, 0)) for s in splits])
        out.print(counts)
        ratio = report.imbalance()
        if ratio is not None:
            out.print(f"imbalance (largest / smallest training class): {ratio:.1f}x", highlight=False)
        def shown(path: str) -> str:  # relative to the dataset folder: shorter, and what the user knows
            return esc(Path(path).relative_to(data) if Path(path).is_relative_to(data) else path)

        if report.quarantined:
            table = Table(title=f"{len(report.quarantined)} file(s) to quarantine (paths under {esc(data)})")
            for col in ("file", "kind", "reason"):
                table.add_column(col, overflow="fold")
            for b in report.quarantined:
                table.add_row(shown(b.path), b.kind, esc(b.reason))
            out.print(table)
        if report.converted:
            table = Table(title=f"{len(report.converted)} file(s) converted for training (paths under {esc(data)})")
            table.add_column("file", overflow="fold")
            table.add_column("conversion", overflow="fold")
            for c in report.converted:
                table.add_row(shown(c.path), esc("; ".join(c.changes)))
            out.print(table)
        for note in report.notes:
            out.print(f"[yellow]note:[/] {esc(note)}", highlight=False)
        if not report.quarantined and not report.converted:
            out.print("[green]no problems found[/]")
    if strict_data and report.bad:
        err.print(f"[bold red]Error:[/] --strict-data: {len(report.bad)} bad file(s) found.", highlight=False)
        raise typer.Exit(1)
