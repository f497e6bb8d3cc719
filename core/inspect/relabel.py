"""``clf relabel DATA fixes.csv``: move the files a fixes list names to their new class folders
(``new_label`` ``_removed``: to ``DATA/_removed/``, keeping the path; see docs/evaluate.md).

Nothing is deleted or overwritten, and it is all or nothing: every row is checked before any
file moves, the moves are logged in ``DATA/.clf-relabel/`` first, and a failed move puts back
those made. ``--undo LOG`` takes only a log in that folder whose rows are moves relabel makes.
Rows already carried out are skipped, so a list can be applied twice.
"""

from __future__ import annotations

import csv
import errno
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
    """A path inside the data folder (relative, no '..'), taken exactly as written: no
    stripped spaces, no backslash read as a separator (either would name another file)."""
    path = PurePosixPath(text)
    if not text or "\0" in text or path.is_absolute() or ".." in path.parts:
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
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{what} {str(path)!r} cannot be read ({exc}); expected a UTF-8 CSV file.") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{str(path)!r} lacks the column(s) {', '.join(missing)} (has: {', '.join(header) or 'none'}); "
            f"expected a header '{','.join(columns)}'. Use the CSV 'clf inspect' downloads"
            + (" or the undo log 'clf relabel' wrote." if columns == LOG_COLUMNS else ".")
        )
    return rows


def _real_folders(data: Path, relative: PurePosixPath) -> str | None:
    """Why the folders from ``data`` down to ``relative`` are not plain folders inside it (a
    link, a file), or None; folders not there yet are fine (the caller decides)."""
    here = data
    for part in relative.parts:
        here = here / part
        if here.is_symlink():
            return f"{PurePosixPath(*here.relative_to(data).parts)} is a symbolic link (relabel moves files only " \
                   f"between plain folders inside the data folder)"
        if not here.exists():
            return None
        if not here.is_dir():
            return f"{PurePosixPath(*here.relative_to(data).parts)} is not a folder"
    return None


def _exactly(path: Path) -> bool:
    """``path`` exists under exactly this name (not a case-folded or normalised twin) and is no link."""
    try:
        return path.name in os.listdir(path.parent) and not path.is_symlink()
    except OSError:
        return False


def _writable(folder: Path, data: Path) -> bool:
    """Whether files can be added to and removed from ``folder`` (its nearest existing
    ancestor inside ``data`` when it is not there yet: relabel makes it)."""
    while not folder.exists() and folder != data:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def _check(data: Path, pairs: list[tuple[PurePosixPath, PurePosixPath, str]], problems: list[str]) -> RelabelPlan:
    """Classify each ``(source, target, row name)``; any problem stops everything. A move needs
    a plain file under exactly its name, plain writable folders on both sides, a free target."""
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
        link = _real_folders(data, source.parent) or _real_folders(data, target.parent)
        if link:
            problems.append(f"{where}: {link}")
        elif _exactly(src) and src.is_file():
            if dst.exists() or dst.is_symlink():
                problems.append(f"{where}: {target} already exists; a move never overwrites a file")
            elif locked := [f for f in (src.parent, dst.parent) if not _writable(f, data)]:
                problems.append(f"{where}: {PurePosixPath(*locked[0].relative_to(data).parts)} is read-only; "
                                f"make it writable to move files in or out of it")
            else:
                plan.moves.append(Move(source.as_posix(), target.as_posix()))
        elif not (src.exists() or src.is_symlink()) and _exactly(dst) and dst.is_file():
            plan.done.append(Move(source.as_posix(), target.as_posix()))
        elif src.is_symlink() or src.exists():
            problems.append(f"{where}: {source} is not a plain file (a link or a folder); move it yourself")
        else:
            problems.append(f"{where}: {source.as_posix()!r} is not in {str(data)!r} under exactly that name")
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
    if not new_label or "/" in new_label or "\\" in new_label or new_label.startswith("."):
        raise _Problem(f"{where}: new_label {new_label!r} is not a class name")
    folder = PurePosixPath(*folders[:at], new_label)
    # Only into an existing class folder: a typo must not become a class the next run trains on.
    link = _real_folders(data, folder)
    if link:
        raise _Problem(f"{where}: {link}")
    if not ((data / folder).is_dir() and _exactly(data / folder)):
        raise _Problem(f"{where}: there is no class folder {folder} beside "
                       f"{PurePosixPath(*folders[:at + 1])} (create it first for a new class)")
    return PurePosixPath(*folders[:at], new_label, *file.parts[at + 1:])


def plan_relabel(data: str | Path, fixes: str | Path) -> RelabelPlan:
    """Check every row of a fixes list against the data folder; move nothing."""
    data = _data_folder(data)
    rows = _read_csv(Path(fixes), FIX_COLUMNS, "Fixes list")
    pairs, problems, unchanged = [], [], []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"line {n}"
        label, new_label = row.get("label") or "", row.get("new_label") or ""
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


def _recorded_move(source: PurePosixPath, target: PurePosixPath) -> bool:
    """Whether ``source -> target`` is a move relabel makes: into ``_removed/`` keeping the
    path, or to another class folder at the same place, under the same name."""
    if target.parts[:1] == (REMOVED_FOLDER,):
        return target.parts[1:] == source.parts
    if len(source.parts) != len(target.parts) or source.name != target.name:
        return False
    return sum(a != b for a, b in zip(source.parts, target.parts)) == 1


def plan_undo(data: str | Path, log: str | Path) -> RelabelPlan:
    """The moves of an undo log, reversed (last first). Only a log in ``DATA/.clf-relabel/``
    (where relabel writes them) whose every row is a move relabel makes is accepted."""
    data = _data_folder(data)
    log = Path(log)
    logs = data / LOG_FOLDER
    if not (log.is_file() and logs.is_dir() and not logs.is_symlink()
            and log.resolve().parent == logs.resolve()):
        raise UsageError(f"{str(log)!r} is not an undo log in {str(logs)!r}; expected a log 'clf relabel "
                         f"--apply' wrote there (it prints the undo command). Pass that file.")
    rows = _read_csv(log, LOG_COLUMNS, "Undo log")
    pairs, problems = [], []
    for n, row in reversed(list(enumerate(rows, start=2))):
        try:
            where = f"line {n}"
            source, target = _relative(row.get("from") or "", where), _relative(row.get("to") or "", where)
            if not _recorded_move(source, target):
                raise _Problem(f"{where}: {source} -> {target} is not a move clf relabel makes")
            if not (data / source.parent).is_dir():  # undo makes no folder
                raise _Problem(f"{where}: the folder {source.parent} is gone; create it to put the file back")
            pairs.append((target, source, where))
        except _Problem as exc:
            problems.append(str(exc))
    return _check(data, pairs, problems)


def _data_folder(data: str | Path) -> Path:
    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"Data folder {str(data)!r} does not exist; expected the folder of class folders "
                         f"the fixes refer to. Pass the run's --data folder.")
    return data.resolve()  # every path is checked against where it really is


def apply_relabel(plan: RelabelPlan) -> Path | None:
    """Carry out ``plan``, all or nothing; returns the undo log (None: nothing to move). The
    log is written before the first move (after a kill, undo skips rows not carried out); a
    failed move puts the moves made back and raises DataError."""
    if not plan.moves:
        return None
    folder = plan.data / LOG_FOLDER
    try:
        if folder.is_symlink():
            raise OSError(f"{folder} is a symbolic link")
        folder.mkdir(exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        log, n = folder / f"undo-{stamp}.csv", 2
        while log.exists():
            log, n = folder / f"undo-{stamp}-{n}.csv", n + 1
        with open(log, "x", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(LOG_COLUMNS)
            writer.writerows((csv_cell(move.source), csv_cell(move.target)) for move in plan.moves)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise DataError(f"Cannot write the undo log in {str(folder)!r} ({exc.strerror or exc}); nothing was "
                        f"moved. Make the data folder writable and run again.") from None
    done: list[Move] = []
    for move in plan.moves:
        try:
            _move(plan.data / move.source, plan.data / move.target,
                  make_folders=PurePosixPath(move.target).parts[0] == REMOVED_FOLDER)
        except _MoveFailed as failed:
            raise _rolled_back(plan.data, log, done, move, str(failed)) from None
        done.append(move)
    return log


def _rolled_back(data: Path, log: Path, done: list[Move], failed: Move, reason: str) -> DataError:
    """Put the moves in ``done`` back (last first); the error says whether that worked."""
    stuck: list[Move] = []
    for move in reversed(done):
        try:
            _move(data / move.target, data / move.source, make_folders=False)
        except _MoveFailed:
            stuck.append(move)
    if not stuck:
        log.unlink(missing_ok=True)
        return DataError(f"Could not move {failed.source} to {failed.target}: {reason}. The {len(done)} file(s) "
                         f"moved before it were put back; nothing changed. Fix that and run again.")
    return DataError(f"Could not move {failed.source} to {failed.target}: {reason}; {len(stuck)} of the "
                     f"{len(done)} file(s) moved before it could not be put back either (first: "
                     f"{stuck[-1].target}). Undo them with: clf relabel {data} --undo {log} --apply")


class _MoveFailed(Exception):
    pass


# Errors of os.link that mean "no hard links here" (another file system type), not "not allowed".
_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


def _move(source: Path, target: Path, *, make_folders: bool) -> None:
    """Rename without ever replacing ``target`` (a hard link fails if it exists), and never
    leave the file in both places."""
    try:
        if make_folders:
            target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise _MoveFailed(f"{str(target)!r} appeared meanwhile; it was not overwritten") from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise _MoveFailed(exc.strerror or str(exc)) from None
        if target.exists() or target.is_symlink():
            raise _MoveFailed(f"{str(target)!r} exists; it was not overwritten") from None
        try:
            os.rename(source, target)
        except OSError as exc2:
            raise _MoveFailed(exc2.strerror or str(exc2)) from None
        return
    try:
        os.unlink(source)
    except OSError as exc:
        os.unlink(target)  # the link just made: the file stays in one place only
        raise _MoveFailed(f"{exc.strerror or exc} (removing it from {str(source.parent)!r})") from None
