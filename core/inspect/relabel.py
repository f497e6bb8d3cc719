"""``clf relabel DATA fixes.csv``: move the files a fixes list names to their new class folders.

A fixes list (``clf inspect``'s page downloads one) has the columns ``file`` (relative to
DATA, as the run's manifest names it), ``label`` (its class now) and ``new_label`` (another
class, or ``_removed`` to move it to ``DATA/_removed/`` keeping its path there). Nothing is
ever deleted or overwritten: every row is checked before any file moves, a move never
replaces an existing file, and each applied move is logged in ``DATA/.clf-relabel/`` so
``--undo LOG`` puts the files back. Rows already carried out (the file is at its new place)
are skipped, so a list can be applied twice. Features are cached by file content, so the
next ``clf run`` extracts none of the moved files again.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from clf.data.images import REMOVED_FOLDER
from clf.errors import DataError, UsageError
from clf.files import csv_cell, csv_value

FIX_COLUMNS = ("file", "label", "new_label")
LOG_COLUMNS = ("from", "to")
LOG_FOLDER = ".clf-relabel"
SHOWN_PROBLEMS = 10


@dataclass
class Move:
    source: str  # relative to the data folder, '/'-separated
    target: str


@dataclass
class RelabelPlan:
    data: Path
    moves: list[Move] = field(default_factory=list)  # to carry out
    done: list[Move] = field(default_factory=list)  # already carried out: the file is at its target
    unchanged: list[str] = field(default_factory=list)  # rows whose new label is the label


def _relative(text: str, where: str) -> PurePosixPath:
    """A path inside the data folder (relative, no '..'), else a problem naming the row."""
    path = PurePosixPath(text.strip().replace("\\", "/"))
    if not text.strip() or path.is_absolute() or ".." in path.parts:
        raise _Problem(f"{where}: {text!r} is not a path inside the data folder")
    return path


class _Problem(Exception):
    pass


def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames or [], list(reader)
        # Cells clf quoted against spreadsheet formulas (the page's fixes.csv, the undo log) read back.
        rows = [{k: csv_value(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
    except FileNotFoundError:
        raise UsageError(f"{what} {str(path)!r} does not exist; expected a CSV file. Check the path.") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{str(path)!r} lacks the column(s) {', '.join(missing)} (has: {', '.join(header) or 'none'}); "
            f"expected a header '{','.join(columns)}'. Use the CSV 'clf inspect' downloads"
            + (" or the undo log 'clf relabel' wrote." if columns == LOG_COLUMNS else ".")
        )
    return rows


def _check(data: Path, pairs: list[tuple[PurePosixPath, PurePosixPath, str]], problems: list[str]) -> RelabelPlan:
    """Classify each ``(source, target, row name)``; problems stop everything."""
    plan = RelabelPlan(data)
    sources, targets = set(), set()
    for source, target, where in pairs:
        if source in sources:
            problems.append(f"{where}: {source} is listed twice")
            continue
        if target in targets:
            problems.append(f"{where}: a second file would move to {target}")
            continue
        sources.add(source)
        targets.add(target)
        src, dst = data / source, data / target
        if src.is_file() and dst.exists():
            problems.append(f"{where}: {target} already exists; a move never overwrites a file")
        elif src.is_file():
            plan.moves.append(Move(source.as_posix(), target.as_posix()))
        elif dst.is_file():
            plan.done.append(Move(source.as_posix(), target.as_posix()))
        else:
            problems.append(f"{where}: {source} is not in {str(data)!r}")
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise DataError(f"{len(problems)} problem(s) in the list, so nothing was moved: {shown}{more}. "
                        f"Fix or remove those rows and run again.")
    return plan


def _target(data: Path, file: PurePosixPath, label: str, new_label: str, where: str) -> PurePosixPath:
    if new_label == REMOVED_FOLDER:
        return PurePosixPath(REMOVED_FOLDER, *file.parts)
    folders = file.parts[:-1]
    if label not in folders:
        raise _Problem(f"{where}: {file} is not in a class folder named {label!r}")
    at = folders.index(label)
    if not new_label or "/" in new_label or new_label in (".", ".."):
        raise _Problem(f"{where}: new_label {new_label!r} is not a class name")
    if not (data.joinpath(*folders[:at]) / new_label).is_dir():
        raise _Problem(f"{where}: there is no class folder {PurePosixPath(*folders[:at], new_label)} "
                       f"beside {PurePosixPath(*folders[:at + 1])} (create it first for a new class)")
    return PurePosixPath(*folders[:at], new_label, *file.parts[at + 1:])


def plan_relabel(data: str | Path, fixes: str | Path) -> RelabelPlan:
    """Check every row of a fixes list against the data folder; move nothing."""
    data = _data_folder(data)
    rows = _read_csv(Path(fixes), FIX_COLUMNS, "Fixes list")
    pairs, problems, unchanged = [], [], []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"line {n}"
        label, new_label = (row.get("label") or "").strip(), (row.get("new_label") or "").strip()
        try:
            file = _relative(row.get("file") or "", where)
            if new_label == label:
                unchanged.append(file.as_posix())
                continue
            pairs.append((file, _target(data, file, label, new_label, where), where))
        except _Problem as exc:
            problems.append(str(exc))
    plan = _check(data, pairs, problems)
    plan.unchanged = unchanged
    return plan


def plan_undo(data: str | Path, log: str | Path) -> RelabelPlan:
    """The moves of an undo log, reversed (last first)."""
    data = _data_folder(data)
    rows = _read_csv(Path(log), LOG_COLUMNS, "Undo log")
    pairs, problems = [], []
    for n, row in reversed(list(enumerate(rows, start=2))):
        try:
            where = f"line {n}"
            pairs.append((_relative(row.get("to") or "", where), _relative(row.get("from") or "", where), where))
        except _Problem as exc:
            problems.append(str(exc))
    return _check(data, pairs, problems)


def _data_folder(data: str | Path) -> Path:
    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"Data folder {str(data)!r} does not exist; expected the folder of class folders "
                         f"the fixes refer to. Pass the run's --data folder.")
    return data


def apply_relabel(plan: RelabelPlan) -> Path | None:
    """Carry out ``plan``; returns the undo log (None when there was nothing to move)."""
    if not plan.moves:
        return None
    folder = plan.data / LOG_FOLDER
    folder.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    log, n = folder / f"undo-{stamp}.csv", 2
    while log.exists():
        log, n = folder / f"undo-{stamp}-{n}.csv", n + 1
    with open(log, "x", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(LOG_COLUMNS)
        f.flush()
        for move in plan.moves:
            _move(plan.data / move.source, plan.data / move.target)
            # Logged the moment it happened: an interrupted run leaves an exact undo log.
            writer.writerow((csv_cell(move.source), csv_cell(move.target)))
            f.flush()
    return log


def _move(source: Path, target: Path) -> None:
    """Rename without ever replacing ``target`` (a hard link fails if it exists)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        raise DataError(f"{str(target)!r} appeared while moving files; it was not overwritten and "
                        f"{str(source)!r} stays where it is. The undo log lists the moves made so far.") from None
    except OSError:
        # No hard links here (another file system type): check, then rename.
        if target.exists():
            raise DataError(f"{str(target)!r} exists; it was not overwritten.") from None
        os.rename(source, target)
        return
    os.unlink(source)
