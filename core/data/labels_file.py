"""Labels files: one row per image, ``path,labels`` (CSV with a header) or
``{"path": ..., "labels": [...]}`` (JSON lines), paths relative to the file, labels separated by
``;`` (a JSON list also works). An optional ``split`` column/key (train, val, test) fixes a row's
split. The same format serves single-label data (one label a row) and multi-label data.

Read here (not in the loader plugin) because the dataset doctor examines the same files first.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clf.data.layout import SPLIT_FOLDER_NAMES
from clf.errors import DataError, DataNotFoundError

LABELS_FILE_SUFFIXES = (".csv", ".jsonl")
TASKS = ("auto", "single", "multilabel")
SEPARATOR = ";"
MAX_BYTES = 256 * 1024 * 1024


@dataclass
class LabelRow:
    path: Path  # resolved against the labels file's folder
    labels: tuple[str, ...]  # distinct, in file order
    split: str | None  # "train", "validation", "test" or None (a seeded split is drawn)
    line: int  # 1-based line in the file, for messages


def is_labels_file(source: str | Path) -> bool:
    """Whether ``--data`` names a labels file (by suffix; it may not exist yet)."""
    return Path(str(source)).suffix.lower() in LABELS_FILE_SUFFIXES


def _split_name(value: Any, where: str) -> str | None:
    text = str(value or "").strip().lower()
    if not text:
        return None
    for split, names in SPLIT_FOLDER_NAMES.items():
        if text in names:
            return split
    raise DataError(f"{where}: split {value!r} is not one of train, val, test; expected one of those (or "
                    f"nothing, for a seeded split). Fix the row.")


def _labels(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, list):
        items = [str(v).strip() for v in value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(SEPARATOR)]
    elif value is None:
        items = []
    else:
        raise DataError(f"{where}: labels {value!r} are neither text nor a list; expected e.g. "
                        f"\"cat;dog\" or [\"cat\", \"dog\"]. Fix the row.")
    return tuple(dict.fromkeys(v for v in items if v))


def read_labels_file(source: str | Path) -> list[LabelRow]:
    """Every row of a labels file, paths resolved; a DataError names the first bad row, every
    path that is not a file (the first few), or a missing ``path`` column."""
    path = Path(str(source)).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"Labels file {str(source)!r} does not exist or is not a file; expected a .csv (path,labels) "
            f"or .jsonl file listing the images. Check --data.")
    if path.stat().st_size > MAX_BYTES:
        raise DataError(f"Labels file {str(source)!r} is over {MAX_BYTES >> 20} MiB; expected a list of images "
                        f"and labels. Check --data.")
    text = path.read_text(encoding="utf-8-sig")
    rows = _read_jsonl(text, path) if path.suffix.lower() == ".jsonl" else _read_csv(text, path)
    if not rows:
        raise DataError(f"Labels file {str(source)!r} lists no images; expected one row per image "
                        f"(path,labels). Add rows.")
    missing = [r for r in rows if not r.path.is_file()]
    if missing:
        shown = "; ".join(f"line {r.line}: {r.path}" for r in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise DataError(
            f"Labels file {str(source)!r} lists {len(missing)} path(s) that are not files: {shown}{more}. "
            f"Expected paths relative to the labels file's folder ({path.parent}). Fix or remove those rows.")
    return rows


def _read_csv(text: str, path: Path) -> list[LabelRow]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "path" not in fields or "labels" not in fields:
        raise DataError(
            f"Labels file {str(path)!r} has columns {reader.fieldnames}; expected a header with 'path' and "
            f"'labels' (and optionally 'split'), e.g. 'path,labels' then 'a.jpg,cat;dog'. Add the header.")
    rows = []
    for n, record in enumerate(reader, start=2):
        record = {str(k).strip().lower(): v for k, v in record.items() if k is not None}
        where = f"{path.name} line {n}"
        rows.append(_row(record, path, n, where))
    return rows


def _read_jsonl(text: str, path: Path) -> list[LabelRow]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{where} is not JSON ({exc}); expected one object a line, e.g. "
                            f"{{\"path\": \"a.jpg\", \"labels\": [\"cat\"]}}. Fix the line.") from None
        if not isinstance(record, dict) or "path" not in record:
            raise DataError(f"{where} is {line[:80]!r}; expected an object with 'path' and 'labels'. "
                            f"Fix the line.")
        rows.append(_row(record, path, n, where))
    return rows


def _row(record: dict[str, Any], path: Path, line: int, where: str) -> LabelRow:
    name = str(record.get("path") or "").strip()
    if not name:
        raise DataError(f"{where} has no path; expected the image's path relative to {path.parent}. Fix the row.")
    return LabelRow((path.parent / name), _labels(record.get("labels"), where),
                    _split_name(record.get("split"), where), line)


def resolve_task(task: str, rows: list[LabelRow]) -> str:
    """``single`` or ``multilabel``: ``auto`` is multi-label when any row has two labels."""
    if task == "auto":
        return "multilabel" if any(len(r.labels) > 1 for r in rows) else "single"
    return task


def check_labels_rows(rows: list[LabelRow], task: str, source: str | Path, *, allow_empty: bool = False) -> list[str]:
    """The sorted label names, after the checks a trainable set needs: no empty label set
    (unless ``allow_empty``: asked for by ``--task multilabel``, an image of none of the labels), one label a row for
    ``single``, every label on at least two images, at least two labels."""
    where = f"Labels file {str(source)!r}"
    if task == "single":
        multi = [r for r in rows if len(r.labels) > 1]
        if multi:
            r = multi[0]
            raise DataError(f"{where} line {r.line} has {len(r.labels)} labels ({SEPARATOR.join(r.labels)}) but "
                            f"--task single; expected one label a row. Pass --task multilabel (or auto).")
    empty = [r for r in rows if not r.labels]
    if empty and not (allow_empty and task == "multilabel"):
        lines = ", ".join(str(r.line) for r in empty[:5])
        raise DataError(f"{where} has {len(empty)} row(s) without labels (line(s) {lines}); expected at least one "
                        f"label a row. Label them, remove them, or pass --task multilabel to keep images of "
                        f"none of the labels as negatives.")
    seen: dict[str, int] = {}
    for r in rows:
        for label in r.labels:
            seen[label] = seen.get(label, 0) + 1
    once = sorted(k for k, v in seen.items() if v < 2)
    if once:
        raise DataError(f"{where} has label(s) seen on one image only: {', '.join(map(repr, once[:10]))}; expected "
                        f"each label on at least two images (one to train on, one to validate). Add images "
                        f"or fix a typo in the label.")
    names = sorted(seen)
    if len(names) < 2:
        raise DataError(f"{where} has {len(names)} label(s) ({', '.join(names) or 'none'}); expected at least 2. "
                        f"Add labels.")
    return names
