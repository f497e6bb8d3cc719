"""Files on disk: atomic writes (a flushed temporary sibling renamed over the target, so readers
never see a half-written file), JSON, file hashes and clf's cache folders."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

CACHE_ENV = "CLF_CACHE_DIR"


def temp_name(path: Path) -> Path:
    """A unique hidden sibling (folder scans skip it) keeping the suffix (Keras and numpy pick formats by it)."""
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


def _fsync(path: Path) -> None:
    """Flush a file, or every file in a folder, to disk (best effort: some filesystems refuse)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        with suppress(OSError), open(f, "rb") as handle:
            os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path (file or folder) that replaces ``path`` on success; on an exception
    it is removed and ``path`` is untouched. An old folder is renamed aside first, since a folder
    cannot be renamed over another."""
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
        _remove(tmp)  # left over only on an error


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
    """Hex digest of a file, read in chunks. ``algorithm`` is a ``hashlib`` name; ``params`` go to
    its constructor (``digest_size=16`` for blake2b)."""
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
    """sha256 of a file; of a folder (a SavedModel), over its files' sorted relative names and digests."""
    path = Path(path)
    if not path.is_dir():
        return file_hash(path)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if not q.is_dir()):
        name = p.relative_to(path).as_posix().encode("utf-8", "surrogateescape")
        digest.update(name + b"\0" + file_hash(p).encode() + b"\n")
    return digest.hexdigest()


def free_bytes(path: str | Path) -> int:
    """Free bytes on the filesystem holding ``path``; the one probe, so tests can simulate a full disk."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


# path -> (size, mtime, inode), sha256: doctor, feature cache and run record each hash every file; read it once.
_SHA256: dict[str, tuple[tuple[int, int, int], str]] = {}


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def remember_sha256(path: str | Path, digest: str, stat: os.stat_result | None = None) -> None:
    """Record ``path``'s sha256 from a caller that read it anyway; ``stat`` is taken before the
    read, so a file changed since is hashed again."""
    key = os.path.abspath(path)
    _SHA256[key] = (_identity(stat or os.stat(key)), digest)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (``file_hash``), read once per process while the file is unchanged."""
    key = os.path.abspath(path)
    stat = os.stat(key)
    known = _SHA256.get(key)
    if known is None or known[0] != _identity(stat):
        remember_sha256(key, file_hash(key), stat)
    return _SHA256[key][1]


# What makes a spreadsheet read a CSV cell as a formula (OWASP, "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: formula-like text gets a leading quote (``=cmd`` -> ``'=cmd``)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_value(cell: str) -> str:
    """The text ``csv_cell`` neutralised, back (``'=cmd`` -> ``=cmd``), for CSVs clf reads."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_START):
        return cell[1:]
    return cell
