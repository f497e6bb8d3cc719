"""Every artifact's sha256 is recorded in labels.json at export and checked before it is opened again.

A model file is a program for a native runtime (a bit-flipped ``.tflite`` can segfault the
interpreter, a SavedModel's graph can touch files), so a changed file is refused first. This
proves integrity, not origin (see docs/security.md); ``--trust-artifact`` opens it anyway."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from clf.errors import ModelError
from clf.files import sha256_path
from clf.data.filecheck import FileProblem, check_file

TRUST_HINT = ("Re-export the model (clf run), or pass --trust-artifact to open it anyway "
              "(only for a file you trust: models run native code).")


def record_digests(files: Iterable[Path]) -> dict[str, str]:
    """``{file name: sha256}`` for the files (or folders) an export wrote."""
    return {Path(f).name: sha256_path(Path(f)) for f in files if Path(f).exists()}


def check_artifact(path: Path, labels: dict, trust: bool = False) -> None:
    """Raise ModelError unless ``path``'s sha256 is the one recorded in ``labels``."""
    if trust:
        return
    path = Path(path)
    recorded = labels.get("sha256", {}).get(path.name)
    if recorded is None:
        raise ModelError(
            f"{str(path)!r} has no sha256 recorded in the labels.json beside it (exported by an "
            f"older clf, or listed by hand), so clf cannot tell whether it changed since export. "
            f"{TRUST_HINT}"
        )
    _check_regular(path)
    actual = sha256_path(path)
    if actual != recorded:
        raise ModelError(
            f"{str(path)!r} changed since it was exported: its sha256 is {actual[:16]}..., labels.json "
            f"records {recorded[:16]}... (damaged, truncated or replaced). Refusing to open it in a "
            f"native runtime. {TRUST_HINT}"
        )


def _check_regular(path: Path) -> None:
    """Only regular files (and folders of them) are hashed: a link to /dev/zero never ends."""
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        if p.is_dir():
            continue
        try:
            check_file(p, max_bytes=1 << 62)
        except FileProblem as problem:
            raise ModelError(f"{str(path)!r} cannot be opened: {str(p)!r} is {problem.reason}.") from None
