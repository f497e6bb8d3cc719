"""Predictions as rows, CSV or JSON text: what ``clf predict --format`` writes.

Kept apart from the CLI so the Python API can produce the same files; nothing here prints.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence, TYPE_CHECKING

from clf.errors import UsageError
from clf.files import csv_cell, write_text

if TYPE_CHECKING:
    from clf.artifacts.predict import Prediction

FORMATS = ("table", "csv", "json")


def choose_format(fmt: str | None, output: str | None) -> str:
    """``--format`` if given, else the ``--output`` file's suffix (.csv, .json), else table."""
    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".") if output else ""
        return suffix if suffix in ("csv", "json") else "table"
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise UsageError(f"Unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}. Pass --format csv, say.")
    return fmt


# After the error: the model's known score and its verdict (a model with one, unless --unknown off).
KNOWN_COLUMNS = ("known_score", "unknown")


def to_json(results: Sequence[Prediction], class_names: Sequence[str], k: int,
            columns: dict[str, list[Any]] | None = None, *, known_score: bool = False) -> str:
    """``columns``: extra values per row, after the others (``clf predict --shard``'s index).
    ``known_score``: each row's ``known_score`` and ``unknown`` (null for an error)."""
    columns = columns or {}
    records = [{"path": r.path, "error": r.error,
                **_labels_values(r, class_names, json=True),
                "top": [{"class": n, "probability": p} for n, p in r.top(class_names, k)] if r.error is None else [],
                **(_known_values(r, json=True) if known_score else {}),
                **{name: values[i] for name, values in columns.items()}}
               for i, r in enumerate(results)]
    return json.dumps(records, indent=2) + "\n"


def to_csv(results: Sequence[Prediction], class_names: Sequence[str], k: int,
           columns: dict[str, list[Any]] | None = None, *, known_score: bool = False) -> str:
    """One row per image: path, class_1, probability_1, ..., error, (``known_score``: known_score,
    unknown as true/false,) then any extra ``columns``; formula-like text quoted (``clf.files.csv_cell``)."""
    columns = columns or {}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    pairs = (c for i in range(1, k + 1) for c in (f"class_{i}", f"probability_{i}"))
    multi = any(r.labels is not None for r in results)
    writer.writerow(["path", *(("labels",) if multi else ()), *pairs, "error", *(KNOWN_COLUMNS if known_score else ()),
                     *columns])
    for n, r in enumerate(results):
        row = [csv_cell(str(r.path)), *(_labels_values(r, class_names, json=False).values() if multi else ())]
        top = r.top(class_names, k) if r.error is None else []
        for i in range(k):
            row += [csv_cell(top[i][0]), f"{top[i][1]:.6f}"] if i < len(top) else ["", ""]
        row.append(csv_cell(r.error or ""))
        if known_score:
            row += list(_known_values(r, json=False).values())
        writer.writerow(row + [values[n] for values in columns.values()])
    return buf.getvalue()


def _labels_values(r: Prediction, class_names: Sequence[str], json: bool) -> dict[str, Any]:
    """Multi-label: ``labels``, the classes over their thresholds with their scores (JSON), or
    their names joined by ';' (CSV; empty for an error row); nothing in JSON for a single-label
    model or an error row."""
    if r.labels is None:
        return {} if json else {"labels": ""}
    if json:
        scores = dict(zip(class_names, r.probabilities))
        return {"labels": [{"class": n, "score": scores[n]} for n in r.labels or []]}
    return {"labels": csv_cell(";".join(r.labels or []))}


def _known_values(r: Prediction, json: bool) -> dict[str, Any]:
    """A row's KNOWN_COLUMNS: JSON values (null for an error row), or CSV cells (empty for one)."""
    if r.error is not None or r.known_score is None:
        return dict.fromkeys(KNOWN_COLUMNS, None if json else "")
    if json:
        return {"known_score": r.known_score, "unknown": r.unknown}
    return {"known_score": f"{r.known_score:.6f}", "unknown": "true" if r.unknown else "false"}


def write_output(target: Path, text: str) -> Path:
    """Write the predictions: atomically into a regular file, as a stream into anything else."""
    target = Path(target)
    if target.exists() and not target.is_file():
        with open(target, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        return target
    return write_text(target, text)
