"""Checks that turn small-data and output-folder mistakes into clear errors or notes, before slow work.

A run folder is recognised only by the ``.clf-run`` marker clf writes on creating it: names like
``config.toml`` or ``model.h5`` are common elsewhere, so ``--force`` deletes only marked folders.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TYPE_CHECKING

from clf.data.filecheck import FileProblem, read_file
from clf.errors import UsageError
from clf import __version__
from clf.files import write_json

if TYPE_CHECKING:
    from clf.events import Observer

RUN_MARKER = ".clf-run"
RUN_MARKER_FORMAT = "clf-run/1"


def claim_run_dir(path: Path) -> None:
    """Mark ``path`` as a clf run folder before anything else is written (keeps an existing
    marker, so resume is a no-op)."""
    if read_run_marker(path) is None:
        write_json(Path(path) / RUN_MARKER, {
            "format": RUN_MARKER_FORMAT, "run_id": uuid.uuid4().hex,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "clf_version": __version__})


def read_run_marker(path: Path) -> dict[str, Any] | None:
    """The marker record of a run folder, or None when ``path`` has no valid marker."""
    try:
        data = json.loads(read_file(Path(path) / RUN_MARKER, 4096).decode("utf-8"))
    except (FileProblem, ValueError):  # missing, not a file, over 4 KiB, not UTF-8 JSON
        return None
    if (not isinstance(data, dict) or data.get("format") != RUN_MARKER_FORMAT
            or not isinstance(data.get("run_id"), str) or not data["run_id"]):
        return None
    return data


def is_run_dir(path: Path) -> bool:
    return Path(path).is_dir() and read_run_marker(path) is not None


def _not_a_run(path: Path) -> UsageError:
    shown = sorted(p.name for p in path.iterdir())[:5]
    return UsageError(
        f"--force would delete {str(path)!r}, which is not a clf run folder: it has no "
        f"{RUN_MARKER} marker (the file clf writes into every run folder it creates; it holds "
        f"{', '.join(map(repr, shown))}{' ...' if len(shown) == 5 else ''}). Refusing to delete "
        f"anything. Pass another --output, or empty or remove that folder yourself (a run "
        f"folder made before clf wrote markers must also be removed by hand)."
    )


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
        if not is_run_dir(path):
            raise _not_a_run(path)
    parent = path  # the nearest folder that exists
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(
            f"Cannot create output folder {str(path)!r}: {str(parent)!r} is a file, not a "
            f"folder; expected a writable location. Pass another --output."
        )
    probe = parent / f".clf-write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"Output folder {str(path)!r} is not writable ({str(parent)!r}: "
            f"{exc.strerror or exc}); expected a folder clf can write the run into. Pass "
            f"another --output or fix the permissions."
        ) from None


def replace_output(path: Path) -> None:
    """--force: move the old run aside, then delete it (a crash leaves it recoverable)."""
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not is_run_dir(path):  # rechecked: the one place that deletes
        raise _not_a_run(path)
    aside = path.with_name(f".{path.name}.replaced-{os.getpid()}")
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


# clf's temporary names (".tmp-..." and older ones): one found in a run folder was left by a
# process that died mid-write
ORPHAN_NAMES = frozenset({"labels.json.tmp", "verification.json.tmp"})


def remove_orphans(run_dir: Path) -> list[Path]:
    """Delete half-written files (clf's temporary names only) a dead run left in its folder and
    checkpoint folder; returns what was removed."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "checkpoint"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if not ((p.name.startswith(".") and ".tmp-" in p.name) or p.name in ORPHAN_NAMES):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def batch_size_for(batch_size: int, n_train: int, observer: Observer) -> int:
    """A batch larger than the training set is shrunk to it, with a note."""
    if 0 < n_train < batch_size:
        observer.note(f"--batch-size {batch_size} is larger than the {n_train} training images; "
                      f"using {n_train}.")
        return n_train
    return batch_size


# a run's record files: no user-named output overwrites them
RUN_RECORD_FILES = frozenset({"labels.json", ".clf-run", "config.toml", "manifest.json", "metrics.json",
                              "quarantine.json", "verification.json", "history.csv", "confusion_matrix.csv",
                              "confusion_matrix.png", "training_curves.png", "unknown_scores.png", "checkpoint",
                              "tensorboard"})
# built-in exporters' files, protected even when labels.json is missing or damaged
DEFAULT_ARTIFACTS = frozenset({"model.h5", "model.weights.h5", "model.keras", "saved_model", "model.onnx"})


def listed_artifacts(folder: Path) -> set[str]:
    """The artifact file names the ``labels.json`` in ``folder`` lists (none when unreadable)."""
    try:  # read_file: a FIFO or device named labels.json is refused, not waited on
        listed = json.loads(read_file(Path(folder) / "labels.json").decode("utf-8")).get("artifacts", {})
        return {f for files in listed.values() if isinstance(files, list) for f in files if isinstance(f, str)}
    except (FileProblem, OSError, ValueError, AttributeError):
        return set()


def run_file(target: Path) -> tuple[Path, str] | None:
    """``(run folder, what)`` when ``target`` is an artifact or record file of a clf run, or
    an existing file anywhere in a folder with the run marker."""
    for folder in target.parents:
        marked = is_run_dir(folder)
        if not (marked or (folder / "labels.json").is_file()):
            continue
        first = target.relative_to(folder).parts[0]
        if (first in listed_artifacts(folder) or first in DEFAULT_ARTIFACTS or first.endswith(".failed")
                or (first.startswith("model") and first.endswith(".tflite"))):
            return folder, f"the model artifact {first!r}"
        if first in RUN_RECORD_FILES:
            return folder, f"the run record file {first!r}"
        if marked and (target.exists() or target.is_symlink()):
            return folder, f"the file {str(target.relative_to(folder))!r}"
    return None


def check_output_file(output: str | Path, overwrite: bool = False, what: str = "predictions") -> Path:
    """Where a user-named ``--output`` file will be written (links resolved), or a UsageError
    before any work: never a clf run's file, even with ``overwrite``; an existing file only
    with ``overwrite``. Streams (a FIFO, ``/dev/stdout``) are written as they are."""
    path = Path(output)
    target = path.resolve()
    if target.is_dir():
        raise UsageError(f"--output {str(output)!r} is a folder; expected a file path for the {what}. "
                         f"Pass a file name, e.g. {str(path / 'predictions.csv')!r}.")
    hit = run_file(target)
    if hit is not None:
        folder, name = hit
        raise UsageError(
            f"--output {str(output)!r} is {name} of the clf run in {str(folder)!r}; {what} are "
            f"never written over a run's files (not even with --overwrite). Pass a path outside "
            f"it, e.g. --output predictions.csv."
        )
    if target.exists() and target.is_file() and not overwrite:
        raise UsageError(
            f"--output {str(output)!r} already exists; expected a new file so nothing is overwritten "
            f"by accident. Pass --overwrite to replace it, or another --output."
        )
    return target
