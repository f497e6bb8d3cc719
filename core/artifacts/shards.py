"""Batch prediction in parts: ``clf predict --shard K/N`` and ``clf merge-predictions``.

A Slurm array job or a Kubernetes indexed Job runs N copies of the same ``clf predict``
command, copy K with ``--shard K/N``; each predicts its own part of the files and writes
its own CSV or JSON; ``merge-predictions`` joins the parts into exactly the file an
unsharded run writes. No service, no coordination between the copies.

The split rule: a file belongs to shard ``blake2b(path) mod N``, the path as ``clf
predict`` lists and prints it. A path hash, not a content hash as when training splits
files between workers: deciding on contents would make every shard read every file, which
is the very work sharding divides (training reads every file anyway, for its cache). The
path rule reads nothing; it does not depend on the order of the files nor on the other
files, so a file keeps its shard when files are added; and every file lands in exactly
one shard. Run every shard with the same arguments from the same folder (as array jobs
do), so that the paths are the same strings.

Each row of a part also carries ``index`` (the file's position in the unsharded output)
and ``total`` (the number of files), which is how the merge restores the order and checks
that no part is missing or given twice; the merged file drops both.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

from clf.errors import DataError, UsageError
from clf.files import csv_cell

PART_COLUMNS = ("index", "total")


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


def select(files: Sequence[str | Path], shard: int, shards: int) -> list[int]:
    """Indices into ``files`` of the files in shard ``shard`` of ``shards``, in order."""
    return [i for i, f in enumerate(files) if shard_of(f, shards) == shard]


def shard_files(files: Sequence[Path], shard: tuple[int, int] | None) -> tuple[list[Path], dict | None]:
    """``(this shard's files, the part's extra columns)``; every file and None without a shard."""
    if shard is None:
        return list(files), None
    picked = select(files, *shard)
    # Each row's position in the unsharded output, and the number of files there.
    return [files[i] for i in picked], {"index": picked, "total": [len(files)] * len(picked)}


def _read_part(path: Path) -> tuple[str, list[str] | None, list]:
    """``(format, CSV header or None, rows)`` of one part file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read prediction part {str(path)!r}: {exc}; expected a file written by "
                        f"clf predict --shard. Check the path.") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{str(path)!r} is not valid JSON ({exc}); expected a part written by clf predict "
                            f"--shard --format json. Run that shard again.") from None
        if not all(isinstance(r, dict) and all(c in r for c in PART_COLUMNS) for r in rows):
            raise DataError(f"{str(path)!r} has rows without {' and '.join(PART_COLUMNS)}; expected a part "
                            f"written by clf predict --shard. Pass the parts, not an unsharded output.")
        return "json", None, rows
    lines = list(csv.reader(io.StringIO(text, newline="")))
    if not lines or tuple(lines[0][-2:]) != PART_COLUMNS:
        raise DataError(f"{str(path)!r} is not a CSV part: its header must end with "
                        f"{','.join(PART_COLUMNS)}; expected a part written by clf predict --shard. "
                        f"Pass the parts, not an unsharded output.")
    return "csv", lines[0], lines[1:]


def merge_predictions(parts: Sequence[str | Path]) -> tuple[str, str]:
    """``(format, text)``: the parts joined in the unsharded order, without the part columns.

    The text equals what ``clf predict`` writes for all the files in one run.
    """
    if not parts:
        raise UsageError("No prediction parts given; expected the files written by clf predict --shard K/N.")
    read = [(Path(p), *_read_part(Path(p))) for p in parts]
    formats = {fmt for _, fmt, _, _ in read}
    if len(formats) > 1:
        raise UsageError(f"The parts mix formats ({', '.join(sorted(formats))}); expected all CSV or all "
                         f"JSON. Run every shard with the same --format.")
    fmt = formats.pop()
    headers = {tuple(h) for _, _, h, _ in read if h is not None}
    if len(headers) > 1:
        raise DataError("The CSV parts have different headers (different --top-k?); expected the same "
                        "clf predict options for every shard. Run the shards again with the same options.")
    rows, totals = {}, set()
    for path, _, _, part in read:
        for row in part:
            index, total = (int(row[c]) for c in PART_COLUMNS) if fmt == "json" else map(int, row[-2:])
            totals.add(total)
            if index in rows:
                raise DataError(f"File number {index} appears twice ({str(path)!r} and another part); "
                                f"expected each part once. Pass each shard's output once.")
            rows[index] = row
    if len(totals) > 1:
        raise DataError(f"The parts disagree on the number of files ({sorted(totals)}): the files changed "
                        f"between shards, or the shards were given different paths. Run every shard with "
                        f"the same arguments on the same files.")
    total = totals.pop() if totals else 0
    missing = [i for i in range(total) if i not in rows]
    if missing or len(rows) != total:
        raise DataError(f"The parts hold {len(rows)} of {total} files (missing numbers "
                        f"{', '.join(map(str, missing[:10]))}{'...' if len(missing) > 10 else ''}); expected "
                        f"every shard's part. Pass all N parts, or run the missing shards.")
    ordered = [rows[i] for i in range(total)]
    if fmt == "json":
        records = [{k: v for k, v in r.items() if k not in PART_COLUMNS} for r in ordered]
        return fmt, json.dumps(records, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(next(iter(headers))[:-len(PART_COLUMNS)])
    # Quoted as clf predict quotes its cells (idempotent: a part's quoted cells stay as they are).
    writer.writerows([csv_cell(c) for c in r[:-len(PART_COLUMNS)]] for r in ordered)
    return fmt, buf.getvalue()
