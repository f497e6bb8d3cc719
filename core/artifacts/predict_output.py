"""Predictions as rows, CSV or JSON text: what ``clf predict --format`` writes.

Kept apart from the CLI so the Python API can produce the same files; nothing here prints.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence, TYPE_CHECKING

from clf.errors import UsageError

if TYPE_CHECKING:
    from clf.artifacts.predict import Prediction

FORMATS = ("table", "csv", "json")
# Files a run writes besides its artifacts: predictions never go over one of these.
RUN_RECORD_FILES = frozenset({"labels.json", ".clf-run", "config.toml", "manifest.json", "metrics.json",
                              "quarantine.json", "verification.json", "history.csv", "confusion_matrix.csv",
                              "confusion_matrix.png", "training_curves.png", "checkpoint", "tensorboard"})
# What the built-in exporters write (also protected when labels.json is missing or damaged).
DEFAULT_ARTIFACTS = frozenset({"model.h5", "model.weights.h5", "model.keras", "saved_model", "model.onnx"})


def choose_format(fmt: str | None, output: str | None) -> str:
    """``--format`` if given, else the ``--output`` file's suffix (.csv, .json), else table."""
    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".") if output else ""
        return suffix if suffix in ("csv", "json") else "table"
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise UsageError(f"Unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}. Pass --format csv, say.")
    return fmt


def to_records(results: Sequence[Prediction], class_names: Sequence[str], k: int,
           columns: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """``columns``: extra values per row, after the others (``clf predict --shard``'s index)."""
    columns = columns or {}
    return [{"path": r.path, "error": r.error,
             "top": [{"class": n, "probability": p} for n, p in r.top(class_names, k)] if r.error is None else [],
             **{name: values[i] for name, values in columns.items()}}
            for i, r in enumerate(results)]


def to_json(results: Sequence[Prediction], class_names: Sequence[str], k: int,
           columns: dict[str, list[Any]] | None = None) -> str:
    return json.dumps(to_records(results, class_names, k, columns), indent=2) + "\n"


def to_csv(results: Sequence[Prediction], class_names: Sequence[str], k: int,
           columns: dict[str, list[Any]] | None = None) -> str:
    """One row per image: path, class_1, probability_1, ... class_k, probability_k, error,
    then any extra ``columns``."""
    columns = columns or {}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = ["path"]
    for i in range(1, k + 1):
        header += [f"class_{i}", f"probability_{i}"]
    writer.writerow(header + ["error", *columns])
    for n, r in enumerate(results):
        row = [r.path]
        top = r.top(class_names, k) if r.error is None else []
        for i in range(k):
            row += [top[i][0], f"{top[i][1]:.6f}"] if i < len(top) else ["", ""]
        writer.writerow(row + [r.error or ""] + [values[n] for values in columns.values()])
    return buf.getvalue()


def _run_file(target: Path) -> tuple[Path, str] | None:
    """``(run folder, what)`` when ``target`` is an artifact or record file of a clf run."""
    import json

    from clf.artifacts.labels import LABELS_FILE
    from clf.data.guardrails import is_run_dir

    for folder in target.parents:
        labels = folder / LABELS_FILE
        if not (is_run_dir(folder) or labels.is_file()):
            continue
        first = target.relative_to(folder).parts[0]
        artifacts: set[str] = set()
        try:
            listed = json.loads(labels.read_text(encoding="utf-8")).get("artifacts", {})
            artifacts = {f for files in listed.values() if isinstance(files, list) for f in files if isinstance(f, str)}
        except (OSError, ValueError, AttributeError):
            pass
        if (first in artifacts or first in DEFAULT_ARTIFACTS or first.endswith(".failed")
                or (first.startswith("model") and first.endswith(".tflite"))):
            return folder, f"the model artifact {first!r}"
        if first in RUN_RECORD_FILES:
            return folder, f"the run record file {first!r}"
    return None


def check_output_file(output: str | Path, overwrite: bool = False) -> Path:
    """Where ``--output`` will be written (links resolved), or a UsageError before any work.

    Never a file of a clf run (its model artifacts, labels.json, checkpoints, record files),
    even with ``overwrite``; an existing file only with ``overwrite``. Streams (a FIFO,
    ``/dev/stdout``) are written as they are: nothing in them is replaced."""
    path = Path(output)
    target = path.resolve()
    if target.is_dir():
        raise UsageError(f"--output {str(output)!r} is a folder; expected a file path for the predictions. "
                         f"Pass a file name, e.g. {str(path / 'predictions.csv')!r}.")
    hit = _run_file(target)
    if hit is not None:
        folder, what = hit
        raise UsageError(
            f"--output {str(output)!r} is {what} of the clf run in {str(folder)!r}; predictions are "
            f"never written over a run's files (not even with --overwrite). Pass a path outside "
            f"it, e.g. --output predictions.csv."
        )
    if target.exists() and target.is_file() and not overwrite:
        raise UsageError(
            f"--output {str(output)!r} already exists; expected a new file so nothing is overwritten "
            f"by accident. Pass --overwrite to replace it, or another --output."
        )
    return target


def write_output(target: Path, text: str) -> Path:
    """Write the predictions: atomically into a regular file, as a stream into anything else."""
    from clf.files import write_text

    target = Path(target)
    if target.exists() and not target.is_file():
        with open(target, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        return target
    return write_text(target, text)
