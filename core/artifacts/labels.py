"""``labels.json`` beside every artifact: the class order (predict never guesses it) and each
artifact's sha256, checked before it is opened again, as a model file is a program for a
native runtime (a bit-flipped ``.tflite`` can crash it). Integrity, not origin: docs/security.md."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from clf.errors import ModelError
from clf.files import sha256_path
from clf import __version__
from clf.data.filecheck import FileProblem, check_file, read_file
from clf.config import MAX_IMAGE_SIZE

LABELS_FILE = "labels.json"
FORMAT = "clf-labels/1"


def make_metadata(class_names: Sequence[str], backbone: str, input_size: Sequence[int], preprocess: str,
                  **extra: Any) -> dict[str, Any]:
    """``input_size``: a ``clf.data.images.ImageSize`` (its centre crop is recorded) or a pair."""
    crop = float(getattr(input_size, "center_crop", 0.0))
    how = (f"centre crop of {crop:g} of the photo at the input's aspect ratio, then" if crop
           else "the whole photo")
    return {
        "format": FORMAT,
        "class_names": list(class_names),
        "backbone": backbone,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "input": "RGB float32 in 0-255, shape [batch, height, width, 3]",
        # Done inside "photo" artifacts (clf.data.fitting), by the client for "fixed" ones.
        "resize": {"center_crop": crop, "method": "bilinear, antialiased",
                   "steps": f"{how} resized to {int(input_size[1])}x{int(input_size[0])} (width x height)"},
        "preprocessing": {"mode": preprocess, "inside_model": True},
        "clf_version": __version__,
        **extra,
    }


MAX_LABELS_BYTES = 16 * 1024 * 1024  # a record with 100k class names is ~2 MB


def read_labels(artifact: Path) -> dict[str, Any]:
    """The label record for an artifact file or bundle directory, validated (``validate_labels``)."""
    artifact = Path(artifact)
    folder = artifact if artifact.is_dir() else artifact.parent
    path = folder / LABELS_FILE
    if not path.is_file():
        raise ModelError(
            f"No {LABELS_FILE} next to {str(artifact)!r}; expected the bundle clf exports "
            f"(model file + {LABELS_FILE} with the class names in output order). Point to a "
            f"clf run's output folder, or write {LABELS_FILE} with 'class_names'."
        )
    try:
        data = json.loads(read_file(path, MAX_LABELS_BYTES).decode("utf-8"))
    except FileProblem as problem:
        raise ModelError(f"{str(path)!r} cannot be used: {problem.reason}.") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelError(
            f"{str(path)!r} is not a valid clf label record (not UTF-8 JSON: {exc}); expected JSON "
            f"with a 'class_names' list. Re-export the model or fix the file."
        ) from None
    validate_labels(data, path)
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain_name(value: Any) -> bool:
    """A file name inside the bundle folder: no folder part, no '..', not absolute."""
    return (isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and "\\" not in value
            and "\0" not in value)


def validate_labels(data: Any, path: Path | str = LABELS_FILE) -> None:
    """Check a label record's fields and types; a ModelError names the first bad field.

    Everything predict reads is checked before any model opens: distinct non-empty class
    names, input size within clf's limits, a finite crop fraction, artifact names (plain file
    names in the bundle folder) and their sha256."""
    def bad(field: str, value: Any, expected: str) -> ModelError:
        shown = repr(value)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        return ModelError(
            f"{str(path)!r} is not a valid clf label record: {field} is {shown}; expected {expected}. "
            f"Re-export the model or fix the file."
        )

    def table(key: str, expected: str) -> dict:  # the object at ``key`` (absent: empty)
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise bad(key, value, expected)
        return value

    if not isinstance(data, dict):
        raise bad("the record", data, "a JSON object")
    if "format" in data and data["format"] != FORMAT:
        raise bad("format", data["format"], repr(FORMAT))
    names = data.get("class_names")
    if not isinstance(names, list) or not names:
        raise bad("class_names", names, "a non-empty list of class names in the model's output order")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise bad(f"class_names[{i}]", name, "a non-empty string")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise bad("class_names", twice, "distinct names (these appear twice)")
    size = data.get("input_size")
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIZE for v in size)):
        raise bad("input_size", size, f"[height, width], two integers from 1 to {MAX_IMAGE_SIZE}")
    crop = table("resize", "an object").get("center_crop", 0.0)
    if not _is_number(crop) or not 0 <= crop <= 1:
        raise bad("resize.center_crop", crop, "a number from 0 to 1")
    for name, files in table("artifacts", "an object: exporter name -> list of file names").items():
        if not isinstance(files, list) or not all(_plain_name(f) for f in files):
            raise bad(f"artifacts[{name!r}]", files, "a list of file names in the bundle folder "
                      "(no folders, no absolute paths)")
    for name, digest in table("sha256", "an object: file name -> sha256").items():
        if not (_plain_name(name) and isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise bad(f"sha256[{name!r}]", digest, "64 lowercase hex digits for a file in the bundle folder")
    inputs = table("inputs", "an object: exporter name -> the input its artifact takes")
    for name, record in inputs.items():
        if not isinstance(record, dict) or record.get("kind") not in ("photo", "fixed"):
            raise bad(f"inputs[{name!r}]", record, "an object whose 'kind' is 'photo' or 'fixed'")
    vectors = data.get("test_vectors", [])
    if not isinstance(vectors, list) or not all(
            isinstance(v, dict) and isinstance(v.get("probabilities"), list)
            and all(_is_number(p) for p in v["probabilities"]) for v in vectors):
        raise bad("test_vectors", vectors, "a list of objects with 'sha256' and 'probabilities' (numbers)")
    for key in ("backbone", "clf_version"):
        if key in data and not isinstance(data[key], str):
            raise bad(key, data[key], "a string")
    table("preprocessing", "an object")
    task = data.get("task", "single")
    if task not in ("single", "multilabel"):
        raise bad("task", task, "'single' or 'multilabel'")
    cuts = data.get("thresholds")
    if task == "multilabel" and (not isinstance(cuts, list) or len(cuts) != len(names)
                                 or not all(_is_number(t) and 0 <= t <= 1 for t in cuts)):
        raise bad("thresholds", cuts, f"one threshold from 0 to 1 per class ({len(names)}) for a multi-label model")
    unknown = table("unknown", "an object describing the known-score output column")
    column = unknown.get("column")
    if unknown and (not isinstance(column, int) or isinstance(column, bool) or column < 1
                    or not _is_number(unknown.get("threshold"))):
        raise bad("unknown", {k: unknown.get(k) for k in ("column", "threshold")},
                  "an integer 'column' (the output after the class probabilities) and a numeric 'threshold'")


def output_width(labels: dict[str, Any]) -> int:
    """Columns the model outputs: one per class, and the known score when recorded."""
    return len(labels["class_names"]) + (1 if labels.get("unknown") else 0)


def split_outputs(labels: dict[str, Any], outputs: Any) -> tuple[Any, Any]:
    """``(probabilities [n, classes], known scores [n] or None)`` of a model's outputs."""
    k = len(labels["class_names"])
    return outputs[:, :k], (outputs[:, k] if labels.get("unknown") else None)


def is_known(labels: dict[str, Any], known_score: float | None) -> bool:
    """Whether a photo with this known score counts as one of the classes (no score: yes)."""
    return known_score is None or known_score >= float(labels["unknown"]["threshold"])


def is_multilabel(labels: dict[str, Any]) -> bool:
    """Whether the model scores every class alone (a sigmoid a class, ``thresholds`` recorded)."""
    return labels.get("task") == "multilabel"


def decide(labels: dict[str, Any], scores: Any) -> Any:
    """Multi-label: 0/1 ``[n, classes]``, each class whose sigmoid score reaches its recorded
    threshold (the one place thresholds are applied)."""
    return apply_thresholds(scores, labels["thresholds"])


def apply_thresholds(scores: Any, thresholds: Sequence[float]) -> Any:
    """0/1 ``[n, classes]``: each class whose score reaches its threshold (columns past the
    classes, such as a known score, ignored)."""
    import numpy as np

    cuts = np.asarray(thresholds, np.float64)
    return np.asarray(scores, np.float64)[:, :len(cuts)] >= cuts[None, :]


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
    for p in [f for f in path.rglob("*") if not f.is_dir()] if path.is_dir() else [path]:
        try:
            check_file(p, max_bytes=1 << 62)
        except FileProblem as problem:
            raise ModelError(f"{str(path)!r} cannot be opened: {str(p)!r} is {problem.reason}.") from None
