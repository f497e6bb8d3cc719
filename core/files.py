"""Write files so that a crash or a kill never leaves a half-written file under the real name.

Everything is written under a temporary name in the same folder (same filesystem, so the
rename is atomic), flushed to disk, then renamed over the target. A reader sees either the
previous complete file or the new complete file, never a mix.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def temp_name(path: Path) -> Path:
    """A hidden sibling that keeps the suffix (Keras picks its format by suffix)."""
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.is_file():
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


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


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read once per process while the file is unchanged."""
    import hashlib

    key = os.path.abspath(path)
    stat = os.stat(key)
    known = _SHA256.get(key)
    if known is not None and known[0] == _identity(stat):
        return known[1]
    digest = hashlib.sha256()
    with open(key, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    _SHA256[key] = (_identity(stat), digest.hexdigest())
    return _SHA256[key][1]
