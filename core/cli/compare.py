"""``clf compare RUN_A RUN_B [RUN ...]``: the runs paired on the same images (clf.inspect.compare)."""

from __future__ import annotations

import json
from typing import Any, List, Optional

import typer
from clf.cli.app import JsonOpt, _notes, app, cli_errors, out
from clf.cli.render import esc
from rich.table import Table

SHOWN_FILES = 10  # photos named per side in the printed summary (the page and JSON have all)


@app.command("compare")
@cli_errors()
def compare_command(
    runs: List[str] = typer.Argument(..., help="Two or more run folders written by 'clf run'; the first is the baseline."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to compare (default: the one each run's metrics.json reports on)."),
    output: Optional[str] = typer.Option(None, "--output", help="Folder for index.html and comparison.json; default RUN_A/comparisons/<timestamp>."),
    page: bool = typer.Option(True, "--page/--no-page", help="Write the page with thumbnails (--no-page: print only)."),
    as_json: bool = JsonOpt,
) -> None:
    """Paired comparison of runs on the same images: accuracy difference with a bootstrap
    interval, McNemar's test, photos right in only one run, recall per class."""
    from clf.inspect.compare import compare_runs

    result = compare_runs(list(runs), split=split, output=output, page=page)
    _notes(result.notes)
    if as_json:
        print(json.dumps({**result.record, "output": str(result.output) if result.output else None}, default=str))
        return
    _print(result.record)
    if result.output is not None:
        out.print(f"[green]page[/] {esc(result.output / 'index.html')}", highlight=False, soft_wrap=True)


def _print(record: dict[str, Any]) -> None:
    def line(text: str) -> None:
        out.print(text, highlight=False, soft_wrap=True)

    line(f"[bold]{record['images']} {esc(record['split'])} images[/], paired: "
         + ", ".join(f"{esc(r['name'])} {r['accuracy']:.4f}" for r in record["runs"]))
    for pair in record["pairs"]:
        a, b = esc(pair["a"]), esc(pair["b"])
        line(f"{b} - {a}: accuracy [bold]{pair['difference']:+.4f}[/] (95% paired bootstrap "
             f"[{pair['low']:+.4f}, {pair['high']:+.4f}]); right only in {a}: {pair['right_only_a']}, only in "
             f"{b}: {pair['right_only_b']}; McNemar p = {pair['p_value']:.3g} ({pair['method']})")
        for side, who in (("right_only_in_a", a), ("right_only_in_b", b)):
            for row in pair[side][:SHOWN_FILES]:
                line(f"  right only in {who}: {esc(row['file'])} (label {esc(row['label'])}; {a}: {esc(row['a'])}, "
                     f"{b}: {esc(row['b'])})")
            if len(pair[side]) > SHOWN_FILES:
                line(f"  and {len(pair[side]) - SHOWN_FILES} more right only in {who} (page, --json)")
    table = Table(title="recall per class", title_justify="left")
    table.add_column("class")
    table.add_column("images", justify="right")
    for r in record["runs"]:
        table.add_column(esc(r["name"]), justify="right")
    for c in record["per_class"]:
        table.add_row(esc(c["class"]), str(c["images"]), *(f"{v:.3f}" for v in c["recall"]))
    out.print(table)
