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


def sha256_path(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes; of a folder (a SavedModel), over its files' relative names
    and contents in sorted order, so any changed, added or removed file changes it."""
    import hashlib

    path = Path(path)

    def of_file(p: Path) -> str:
        digest = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
        return digest.hexdigest()

    if not path.is_dir():
        return of_file(path)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if not q.is_dir()):
        name = p.relative_to(path).as_posix().encode("utf-8", "surrogateescape")
        digest.update(name + b"\0" + of_file(p).encode() + b"\n")
    return digest.hexdigest()


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing folder).

    The one probe every free-space check goes through, so tests can simulate a full disk."""
    import shutil

    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free
