"""Batch prediction in parts (a Slurm array, say): ``clf predict --shard K/N`` writes part K,
``clf merge-predictions`` joins the parts into exactly the unsharded file (each row's
``index`` and ``total`` restore the order and show a missing part).

A file's shard is ``blake2b(path) mod N`` of its path as printed, not of its content (every
shard would read every file), so every shard runs with the same arguments in one folder."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from clf.artifacts.predict_output import KNOWN_COLUMNS
from clf.errors import DataError, UsageError
from clf.files import csv_cell, sha256_path
from clf.data.filecheck import FileProblem, check_file

# Added after the prediction columns: model fingerprint (16 hex of its sha256), "K/N", position, file count.
PART_COLUMNS = ("model", "shard", "index", "total")
# Parts written before the model and the part were recorded end with these two only.
LEGACY_COLUMNS = ("index", "total")
# A JSON row's last key (clf predict --json): which artifact answered, in which runtime; kept by the merge.
ANSWERED_BY = "artifact"


def parse_shard(text: str, fmt: str = "csv") -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``, with ``0 <= K < N``; a part is written as CSV or JSON."""
    try:
        k, n = (int(p) for p in str(text).strip().split("/"))
    except ValueError:
        k = n = -1
    if n < 1 or not 0 <= k < n:
        raise UsageError(
            f"Invalid --shard {text!r}: expected K/N with 0 <= K < N, such as 0/4 (the first of four "
            f"parts). Pass the array task index as K, e.g. --shard $SLURM_ARRAY_TASK_ID/4."
        )
    if fmt not in ("csv", "json"):
        raise UsageError(f"--shard {text} writes a part for clf merge-predictions, which reads CSV or JSON, not "
                         f"{fmt}. Pass --format csv (or json), or an --output ending in .csv or .json.")
    return k, n


def shard_of(path: str | Path, shards: int) -> int:
    """The shard (0..shards-1) a file belongs to, from its path string alone."""
    digest = hashlib.blake2b(os.fsencode(str(path)), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def model_fingerprint(path: str | Path, labels: dict, checked: bool = True) -> str:
    """16 hex digits of an artifact's sha256: labels.json's if ``checked`` (no second read), else hashed."""
    digest = labels.get("sha256", {}).get(Path(path).name) if checked else None  # validated: a dict
    return (digest if isinstance(digest, str) else sha256_path(path))[:16]


def shard_files(files: Sequence[Path], shard: tuple[int, int] | None,
                model: str = "") -> tuple[list[Path], dict | None]:
    """``(this shard's files, the part's extra columns)``; every file and None without a shard.

    ``model``: the model's fingerprint (``model_fingerprint``), so that the merge can refuse
    parts predicted by different models."""
    if shard is None:
        return list(files), None
    picked = [i for i, f in enumerate(files) if shard_of(f, shard[1]) == shard[0]]
    n = len(picked)
    return [files[i] for i in picked], {"model": [model] * n, "shard": [f"{shard[0]}/{shard[1]}"] * n,
                                        "index": picked, "total": [len(files)] * n}


@dataclass
class _Part:
    """One part file, every cell checked: its rows as ``(line, index, prediction row)``."""

    path: Path
    fmt: str
    header: tuple[str, ...] | None  # CSV: the prediction columns, without the part columns
    model: str | None  # None: written before parts recorded their model
    shard: tuple[int, int] | None
    totals: set[int] = field(default_factory=set)
    widths: set[int] = field(default_factory=set)  # JSON: entries in "top" of predicted rows
    known: set[bool] = field(default_factory=set)  # JSON: whether rows carry KNOWN_COLUMNS
    rows: list[tuple[int, int, Any]] = field(default_factory=list)


def _problem(where: str, what: str) -> DataError:
    return DataError(f"{where}: {what}; expected a part written by clf predict --shard, unedited. "
                     f"Run that shard again (same command, same --shard K/N) to write it anew.")


def _whole_number(value: Any, name: str, where: str) -> int:
    """A count or a position: an integer (JSON) or its plain decimal digits (CSV), nothing else."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10 ** 18:
        return value
    raise _problem(where, f"{name} is {_shown(value)}, not a whole number")


def _probability(value: Any, where: str) -> float:
    """A finite probability in [0, 1]; ``1e400`` (infinity), NaN, text or null are refused."""
    number = None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # an integer of hundreds of digits overflows
            pass
    if number is None or not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise _problem(where, f"probability {_shown(value)} is not a number between 0 and 1")
    return number


def _known_cells(score: Any, unknown: Any, error: bool, where: str) -> None:
    """A row's known score (a probability) and verdict (true/false): both empty (CSV) or null
    (JSON) in an error row, both there in the others."""
    if error or score in ("", None):
        if not error or score not in ("", None) or unknown not in ("", None):
            raise _problem(where, f"known_score {_shown(score)} and unknown {_shown(unknown)} in "
                                  f"{'an error row' if error else 'a predicted row'}")
        return
    _probability(score, where)
    if not isinstance(unknown, bool) and unknown not in ("true", "false"):
        raise _problem(where, f"unknown {_shown(unknown)} is not true or false")


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _part_cells(part: _Part, cells: dict[str, Any], where: str) -> tuple[int, int]:
    """Check a row's part columns against the part's other rows; ``(index, total)``."""
    index = _whole_number(cells["index"], "index", where)
    total = _whole_number(cells["total"], "total", where)
    if index >= total:
        raise _problem(where, f"index {index} is not below total {total}")
    if "model" in cells:
        model, shard = cells["model"], cells["shard"]
        found = re.fullmatch(r"([0-9]{1,9})/([0-9]{1,9})", shard) if isinstance(shard, str) else None
        if not isinstance(model, str) or found is None or int(found[1]) >= int(found[2]):
            raise _problem(where, f"model {_shown(model)} and shard {_shown(shard)} are not a model "
                                  f"fingerprint and a part K/N")
        here = (int(found[1]), int(found[2]))
        if part.shard is None:  # an empty model: shard_files called without one (not checked, noted)
            part.model, part.shard = model or None, here
        elif (model or None, here) != (part.model, part.shard):
            raise _problem(where, f"model {model} part {shard} differs from the rows above it (model "
                                  f"{part.model} part {part.shard[0]}/{part.shard[1]}): two parts in one file")
    part.totals.add(total)
    return index, total


def _csv_part(path: Path, text: str) -> _Part:
    name = repr(str(path))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        if tuple(header[-2:]) != LEGACY_COLUMNS:
            raise DataError(f"{name} is not a CSV part: its header must end with "
                            f"{','.join(LEGACY_COLUMNS)}; expected a part written by clf predict --shard. "
                            f"Pass the parts, not an unsharded output.")
        extra = PART_COLUMNS if tuple(header[-len(PART_COLUMNS):]) == PART_COLUMNS else LEGACY_COLUMNS
        columns = header[:-len(extra)]
        known = tuple(columns[-len(KNOWN_COLUMNS):]) == KNOWN_COLUMNS
        k = (len(columns) - 2 - (len(KNOWN_COLUMNS) if known else 0)) // 2
        expected = ["path", *(c for i in range(1, k + 1) for c in (f"class_{i}", f"probability_{i}")), "error",
                    *(KNOWN_COLUMNS if known else ())]
        if columns != expected or k < 1:
            raise _problem(f"{name}, line 1", f"the header {_shown(','.join(header))} is not path, "
                                             f"class_1, probability_1, ..., error, (known_score, unknown,) "
                                             f"then the part columns")
        part = _Part(path, "csv", tuple(columns), None, None)
        for row in reader:
            where = f"{name}, line {reader.line_num}"
            if len(row) != len(header):
                raise _problem(where, f"{len(row)} cells where the header has {len(header)}")
            values = row[:len(columns)]
            if known:
                score, unknown = values[-len(KNOWN_COLUMNS):]
                _known_cells(score, unknown, bool(values[-len(KNOWN_COLUMNS) - 1]), where)
                values = values[:-len(KNOWN_COLUMNS)]
            for cls, prob in zip(values[1:-1:2], values[2:-1:2]):
                if bool(cls) != bool(prob):
                    raise _problem(where, f"class {cls!r} with probability {prob!r}")
                if prob:
                    _probability(prob, where)
            if not values[0] or (values[-1] and any(values[1:-1])):
                raise _problem(where, "an empty path, or an error row with classes")
            index, _ = _part_cells(part, dict(zip(extra, row[len(columns):])), where)
            part.rows.append((reader.line_num, index, row))
    except csv.Error as exc:
        raise _problem(f"{name}, line {reader.line_num}", f"not CSV ({exc})") from None
    return part


def _json_part(path: Path, text: str) -> _Part:
    name = repr(str(path))
    try:
        records = json.loads(text)
    except ValueError as exc:  # also an integer of thousands of digits
        raise DataError(f"{name} is not valid JSON ({exc}); expected a part written by clf predict "
                        f"--shard --format json. Run that shard again.") from None
    if not isinstance(records, list):
        raise _problem(name, f"a JSON {type(records).__name__}, not a list of rows")
    part = _Part(path, "json", None, None, None)
    decoder, pos, line = json.JSONDecoder(), text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    for record in records:
        # Each row's line, for the messages: step over the separators to where the row begins.
        start = pos
        while text[start] in " \t\r\n,":
            start += 1
        line += text.count("\n", pos, start)
        pos = decoder.raw_decode(text, start)[1]
        where = f"{name}, line {line}"
        if not isinstance(record, dict) or not all(c in record for c in LEGACY_COLUMNS):
            raise DataError(f"{name} has rows without {' and '.join(LEGACY_COLUMNS)}; expected a part "
                            f"written by clf predict --shard. Pass the parts, not an unsharded output.")
        extra = PART_COLUMNS if "model" in record else LEGACY_COLUMNS
        known = KNOWN_COLUMNS if "known_score" in record else ()
        answered = (ANSWERED_BY,) if ANSWERED_BY in record else ()
        if set(record) != {"path", "error", "top", *known, *extra, *answered}:
            raise _problem(where, f"the keys {', '.join(map(repr, record))} are not path, error, top, "
                                  f"(known_score, unknown,) {', '.join(extra)}")
        top, error = record["top"], record["error"]
        part.known.add(bool(known))
        if known:
            _known_cells(record["known_score"], record["unknown"], error is not None, where)
        if not isinstance(record["path"], str) or not record["path"] or not (error is None or isinstance(error, str)):
            raise _problem(where, "path is not a file name, or error is neither text nor null")
        if not isinstance(top, list) or (error is not None and top):
            raise _problem(where, "top is not a list of classes (or an error row has classes)")
        for entry in top:
            if not isinstance(entry, dict) or set(entry) != {"class", "probability"} or not isinstance(entry["class"], str):
                raise _problem(where, f"top entry {_shown(entry)} is not a class and its probability")
            _probability(entry["probability"], where)
        if error is None:
            part.widths.add(len(top))
        index, _ = _part_cells(part, {c: record[c] for c in extra}, where)
        part.rows.append((line, index, record))
    return part


def _read_part(path: Path) -> _Part:
    """One part file, read and checked cell by cell."""
    try:
        check_file(path, max_bytes=1 << 62)  # a FIFO or a device would never end
        text = path.read_text(encoding="utf-8")
    except (FileProblem, OSError, UnicodeDecodeError) as exc:  # a FileProblem's text is its reason
        raise DataError(f"Cannot read prediction part {str(path)!r}: {exc}; expected a file written by "
                        f"clf predict --shard. Check the path.") from None
    return _json_part(path, text) if text.lstrip().startswith("[") else _csv_part(path, text)


def _same_model_and_shards(read: list[_Part], notes: list[str]) -> None:
    """Every part from one model and one split into N parts, each part given once."""
    models = {p.model for p in read if p.model is not None}
    if len(models) > 1:
        listed = "; ".join(f"{str(p.path)!r}: {p.model}" for p in read if p.model is not None)
        raise DataError(f"The parts were predicted by different models ({listed}); expected every part "
                        f"from the same model file. Run every shard with the same model.")
    counts = {p.shard[1] for p in read if p.shard is not None}
    if len(counts) > 1:
        raise DataError(f"The parts split the files into different numbers of parts ("
                        f"{', '.join(f'{str(p.path)!r}: {p.shard[0]}/{p.shard[1]}' for p in read if p.shard)}"
                        f"); expected every --shard K/N with the same N. Run the shards again with one N.")
    seen: dict[tuple[int, int], _Part] = {}
    for p in read:
        if p.shard is not None and seen.setdefault(p.shard, p) is not p:
            raise DataError(f"Part {p.shard[0]}/{p.shard[1]} appears twice ({str(seen[p.shard].path)!r} "
                            f"and {str(p.path)!r}); expected each part once. Pass each shard's output once.")
    old = [str(p.path) for p in read if p.model is None and p.rows]
    if old:
        notes.append(f"{', '.join(map(repr, old))} record(s) no model fingerprint (written by an older clf, or "
                     f"by clf.shard_files without one), "
                     f"so clf cannot check that every part comes from the same model; run those shards "
                     f"again to have it checked.")


def merge_predictions(parts: Sequence[str | Path], notes: list[str] | None = None) -> tuple[str, str]:
    """``(format, text)``: the parts joined in unsharded order, as one ``clf predict`` run writes it.

    Every part is checked first (each cell; one model; one N; each part and file once);
    ``notes`` collects what could not be checked."""
    notes = notes if notes is not None else []
    if not parts:
        raise UsageError("No prediction parts given; expected the files written by clf predict --shard K/N.")
    read = [_read_part(Path(p)) for p in parts]
    formats = {p.fmt for p in read}
    if len(formats) > 1:
        raise UsageError(f"The parts mix formats ({', '.join(sorted(formats))}); expected all CSV or all "
                         f"JSON. Run every shard with the same --format.")
    fmt = formats.pop()
    headers = {p.header for p in read if p.header is not None}
    if (len(headers) > 1 or len({w for p in read for w in p.widths}) > 1
            or len({k for p in read for k in p.known}) > 1):
        raise DataError("The parts have different columns (different --top-k or --unknown?); expected the same "
                        "clf predict options for every shard. Run the shards again with the same options.")
    _same_model_and_shards(read, notes)
    rows: dict[int, Any] = {}
    totals: set[int] = set().union(*(part.totals for part in read))
    for part in read:
        for line, index, row in part.rows:
            if index in rows:
                raise DataError(f"File number {index} appears twice ({str(part.path)!r}, line {line}, and "
                                f"another part); expected each part once. Pass each shard's output once.")
            rows[index] = row
    if len(totals) > 1:
        raise DataError(f"The parts disagree on the number of files ({sorted(totals)}): the files changed "
                        f"between shards, or the shards were given different paths. Run every shard with "
                        f"the same arguments on the same files.")
    total = totals.pop() if totals else 0
    if len(rows) != total:
        # Gaps lie among the first len(rows) + 10 numbers; the claimed total is never allocated.
        missing = [i for i in range(min(total, len(rows) + 10)) if i not in rows][:10]
        raise DataError(f"The parts hold {len(rows)} of {total} files (missing numbers "
                        f"{', '.join(map(str, missing))}{'...' if total - len(rows) > 10 else ''}); expected "
                        f"every shard's part. Pass all N parts, or run the missing shards.")
    ordered = [rows[i] for i in range(total)]
    if fmt == "json":
        records = [{k: v for k, v in r.items() if k not in PART_COLUMNS} for r in ordered]
        return fmt, json.dumps(records, indent=2) + "\n"
    header = next(iter(headers))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    # Quoted as clf predict quotes its cells (idempotent: a part's quoted cells stay as they are).
    writer.writerows([csv_cell(c) for c in r[:len(header)]] for r in ordered)
    return fmt, buf.getvalue()
