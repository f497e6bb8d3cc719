"""Files on disk, in one place: atomic writes, JSON, file hashes and clf's cache folders.

Atomic writes: everything is written under a temporary name in the same folder (same
filesystem, so the rename is atomic), flushed to disk, then renamed over the target. A
reader sees either the previous complete file or the new complete file, never a mix, and
an exception (or a kill) while writing leaves no half-written file under the real name.
``atomic_path`` hands the temporary path to writers that need a path (Keras'
``model.save``, ``np.savez``, a SavedModel folder); ``write_bytes``/``write_text``/
``write_json`` cover the rest.

Cache folders: one rule for every cache clf keeps (``cache_dir(kind)``), and Keras' own
folder for downloaded weights (``keras_cache_dir()``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

CACHE_ENV = "CLF_CACHE_DIR"


def temp_name(path: Path) -> Path:
    """A hidden sibling, unique to this call, that keeps the suffix (Keras and numpy pick
    the format by suffix). Hidden so that folder scans (checkpoints, listings) skip it."""
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


def _fsync(path: Path) -> None:
    """Flush a file, or every file in a folder, to disk (best effort: some filesystems refuse)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write (a file or a folder); on success it replaces ``path``.

    On an exception the temporary file or folder is removed and ``path`` is left as it was.
    A folder cannot be renamed over an existing one, so an old folder is first renamed aside
    and deleted after the new one is in place: a reader sees the old folder, no folder, or
    the new one, never a partial one.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.exists():
            _fsync(tmp)
        if tmp.is_dir() and path.is_dir():
            aside = temp_name(path)
            os.replace(path, aside)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(aside, path)
                raise
            _remove(aside)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> Path:
    """Indented JSON and a final newline; values JSON lacks (paths, dates) as strings."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def file_hash(path: str | Path, algorithm: str = "sha256", **params: Any) -> str:
    """Hex digest of a file's bytes, read in chunks (never the whole file in memory).

    ``algorithm`` is any ``hashlib`` name; ``params`` go to its constructor (for example
    ``digest_size=16`` for blake2b)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.new(algorithm, **params)).hexdigest()


def cache_root() -> Path:
    """clf's cache folder: ``$CLF_CACHE_DIR``, else ``$XDG_CACHE_HOME/clf``, else ``~/.cache/clf``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clf"


def cache_dir(kind: str) -> Path:
    """One cache's folder under ``cache_root()``: ``features``, ``converted``, ..."""
    return cache_root() / kind


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, else ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def sha256_path(path: str | Path) -> str:
    """sha256 of a file's bytes (``file_hash``); of a folder (a SavedModel), over its files'
    relative names and digests in sorted order, so any changed, added or removed file changes it."""
    path = Path(path)
    if not path.is_dir():
        return file_hash(path)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if not q.is_dir()):
        name = p.relative_to(path).as_posix().encode("utf-8", "surrogateescape")
        digest.update(name + b"\0" + file_hash(p).encode() + b"\n")
    return digest.hexdigest()


def free_bytes(path: str | Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing folder).

    The one probe every free-space check goes through, so tests can simulate a full disk."""
    import shutil

    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


# Content hashes of files already hashed in this process, by path and the stat that
# identifies that content (size, modification time, inode): the dataset doctor, the feature
# cache and the run record each need every file's hash, and each file is read for it once.
_SHA256: dict[str, tuple[tuple[int, int, int], str]] = {}


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def remember_sha256(path: str | Path, digest: str, stat: os.stat_result | None = None) -> None:
    """Record ``path``'s sha256, computed by a caller that read the file anyway (``stat``:
    taken before it was read, so a file changed since is hashed again)."""
    key = os.path.abspath(path)
    _SHA256[key] = (_identity(stat or os.stat(key)), digest)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (``file_hash``), read once per process while the file is unchanged."""
    key = os.path.abspath(path)
    stat = os.stat(key)
    known = _SHA256.get(key)
    if known is not None and known[0] == _identity(stat):
        return known[1]
    _SHA256[key] = (_identity(stat), file_hash(key))
    return _SHA256[key][1]


# What makes a spreadsheet read a CSV cell as a formula (OWASP, "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: text that starts like a formula gets a
    leading single quote (``=cmd`` -> ``'=cmd``); anything else as it is. Idempotent."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_value(cell: str) -> str:
    """The text ``csv_cell`` neutralised, back (``'=cmd`` -> ``=cmd``), for CSVs clf reads."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_START):
        return cell[1:]
    return cell
