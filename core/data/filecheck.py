"""Look at a file before reading it: regular file, bounded size, bounded pixel count.

Files from others (a link to ``/dev/zero``, a FIFO, a huge sparse ``.jpg``, a giant PNG) would
exhaust memory or hang TensorFlow and Pillow. So only regular files are opened, none over
``MAX_FILE_BYTES`` is read, and none whose header declares over ``MAX_PIXELS`` is decoded;
the limits are the same in training, predict, evaluate and serve.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING
from clf.errors import DataError

if TYPE_CHECKING:
    from _typeshed import StrPath

# far above any photo; RAW files and scans that big are not JPEG/PNG anyway
MAX_FILE_BYTES = 256 * 1024 * 1024
# Pillow's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS), beyond any camera's sensor
MAX_PIXELS = 178_956_970

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


class FileProblem(Exception):
    """Why a file is not read: ``kind`` (a quarantine kind) and a human ``reason``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def display_path(path: StrPath | bytes) -> str:
    """A path as text any terminal, CSV or JSON can hold: non-UTF-8 bytes appear as ``\\xe9`` escapes."""
    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_file(path: StrPath, max_bytes: int = MAX_FILE_BYTES) -> None:
    """FileProblem unless ``path`` is a regular file within the size cap (links followed)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise FileProblem("unreadable", f"cannot be read: {exc.strerror or exc}") from None
    _check_stat(path, st, max_bytes)


def _check_stat(path: StrPath, st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        via = " behind a symbolic link" if os.path.islink(path) else ""
        raise FileProblem("not_regular", f"not a regular file: {what}{via}; never read (it could "
                                         f"block or never end)")
    if st.st_size > max_bytes:
        raise FileProblem("too_large", f"file of {st.st_size:,} bytes, over the {max_bytes:,}-byte limit "
                                       f"for an image; not read. Downscale or recompress it")


def read_file(path: StrPath, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file within the size cap. Opened non-blocking and rechecked on the
    descriptor, so a file swapped for a FIFO or grown since ``check_file`` cannot hang or overrun."""
    check_file(path, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise FileProblem("unreadable", f"cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        _check_stat(path, os.fstat(fd), max_bytes)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileProblem("too_large", f"file over the {max_bytes:,}-byte limit for an image; not read")
    return data


def check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise FileProblem("too_large", f"{width}x{height} px ({width * height:,} pixels), over the "
                                       f"{MAX_PIXELS:,}-pixel limit; not decoded (it would take "
                                       f"{width * height * 3 / 2**30:.1f} GiB or more). Downscale it")


def bomb_problem(exc: Exception) -> FileProblem:
    """Pillow's DecompressionBombError in the words of ``check_pixels`` (it names no size)."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return FileProblem("too_large", f"{pixels}, over the {MAX_PIXELS:,}-pixel limit; not decoded. "
                                    f"Downscale it")


def image_problem(path: StrPath) -> str | None:
    """Why ``path`` may not be decoded (not a regular file within the size cap, or an image header
    declaring over ``MAX_PIXELS`` pixels), or None. Unidentified files pass: their decoder reports
    them."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        check_file(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_pixels(*im.size)
    except FileProblem as problem:
        return problem.reason
    except Image.DecompressionBombError as exc:
        return bomb_problem(exc).reason
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        pass
    return None


def as_tf_path(path: StrPath) -> bytes:
    """A path as bytes for ``tf.io.read_file``: a non-UTF-8 str makes tf.data fail ('Could not
    build a TypeSpec')."""
    return os.fsencode(Path(path))


def inside_folder(root: str | os.PathLike[str], name: object, source: str) -> Path:
    """``root / name`` for a path a run's record lists (manifest.json, verification.json), only
    if it lies inside ``root``; else a DataError naming ``source``, so an edited record never makes
    clf read outside. The path is checked as written: links inside ``root`` are the data's own."""
    base = os.path.abspath(root)
    # No ".." at all: after a link inside root, "a/../.." is not where it reads.
    if isinstance(name, str) and name and "\0" not in name and ".." not in Path(name).parts:
        path = os.path.normpath(os.path.join(base, name))
        if os.path.commonpath([base, path]) == base and path != base:
            return Path(path)
    shown = repr(name) if len(repr(name)) <= 200 else repr(name)[:197] + "..."
    raise DataError(f"{source!r} lists {shown}, which is not a file inside {display_path(base)!r}; expected paths "
                    f"relative to that folder, as clf records them. The file was edited or damaged: restore it, "
                    f"or train again.")
