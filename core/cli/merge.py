"""``clf merge-predictions``: join the parts of a sharded ``clf predict --shard K/N``."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer
from clf.cli.app import _notes, app, cli_errors, err
from clf.errors import UsageError


@app.command("merge-predictions")
@cli_errors()
def merge_predictions(
    parts: List[str] = typer.Argument(..., help="The CSV or JSON files written by clf predict --shard K/N, all N of them."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of standard output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
) -> None:
    """Join prediction parts into exactly the file one unsharded clf predict writes."""
    from clf.artifacts.predict_output import choose_format, write_output
    from clf.artifacts.shards import merge_predictions as merge
    from clf.data.guardrails import check_output_file

    # The guard clf predict --output uses: never over a run's files, over another file only with --overwrite.
    target = check_output_file(output, overwrite, "merged predictions") if output else None
    notes: list[str] = []
    fmt, text = merge(parts, notes)
    _notes(notes)
    suffix = choose_format(None, output)  # csv or json from --output's suffix, else table
    if suffix in ("csv", "json") and suffix != fmt:
        raise UsageError(f"--output {output!r} ends in .{suffix} but the parts are {fmt}; pass an --output "
                         f"ending in .{fmt}.")
    if target is None:
        sys.stdout.write(text)
        return
    try:
        write_output(target, text)
    except OSError as exc:
        raise UsageError(f"cannot write --output {output!r}: {exc.strerror}; expected a writable file path. "
                         f"Pass another --output.") from None
    err.print(f"merged {len(parts)} part(s) into {output}", highlight=False)
