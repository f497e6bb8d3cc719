"""Checks that turn small-data and output-folder mistakes into clear errors or notes.

Each one says what happened, what was expected and how to fix it, before any slow work.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from clf.errors import UsageError

# Files that mark a folder as a clf run folder, so --force replaces only those.
RUN_MARKERS = ("labels.json", "quarantine.json", "checkpoint", "model.h5", "manifest.json", "config.toml")


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(output: str | None, force: bool = False) -> None:
    """Fail fast (before loading data) when ``--output`` cannot be used."""
    if not output:
        return
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"Output path {str(path)!r} exists and is a file; expected a folder for the run. "
            f"Pass another --output."
        )
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise UsageError(
                f"Output folder {str(path)!r} already exists and is not empty; expected a new "
                f"or empty folder so no earlier run is overwritten. Pass another --output, or "
                f"--force to replace it."
            )
        if not any((path / m).exists() for m in RUN_MARKERS):
            raise UsageError(
                f"--force would delete {str(path)!r}, which does not look like a clf run folder "
                f"(none of {', '.join(RUN_MARKERS)} in it); expected a folder an earlier "
                f"'clf run' wrote. Refusing; pass another --output or empty it yourself."
            )
    parent = _nearest_existing(path)
    if not parent.is_dir():
        raise UsageError(
            f"Cannot create output folder {str(path)!r}: {str(parent)!r} is a file, not a "
            f"folder; expected a writable location. Pass another --output."
        )
    _probe_writable(parent, path)


def _probe_writable(folder: Path, target: Path) -> None:
    probe = folder / f".clf-write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"Output folder {str(target)!r} is not writable ({str(folder)!r}: "
            f"{exc.strerror or exc}); expected a folder clf can write the run into. Pass "
            f"another --output or fix the permissions."
        ) from None


def replace_output(path: Path) -> None:
    """--force: move the old run aside, then delete it (a crash leaves it recoverable)."""
    if not path.is_dir() or not any(path.iterdir()):
        return
    aside = path.with_name(f".{path.name}.replaced-{os.getpid()}")
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def batch_size_for(batch_size: int, n_train: int, observer) -> int:
    """A batch larger than the training set is shrunk to it, with a note."""
    if 0 < n_train < batch_size:
        observer.note(f"--batch-size {batch_size} is larger than the {n_train} training images; "
                      f"using {n_train}.")
        return n_train
    return batch_size
