"""A run's ``manifest.json`` read back, validated and its files kept inside the data folder
(``clf.data.filecheck.inside_folder``), so an edited or damaged record is one clear error."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from clf.data.filecheck import FileProblem, inside_folder, read_file
from clf.errors import ModelError, UsageError

MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 256 * 1024 * 1024  # every file of a run is listed: ~100 bytes per image


def read_manifest(run_dir: Path, *, required: bool = True) -> dict[str, Any]:
    """``run_dir``'s manifest.json, validated; ``{}`` when absent and not ``required``."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.exists() and not path.is_symlink():
        if not required:
            return {}
        raise UsageError(f"{str(run_dir)!r} has no {MANIFEST_FILE}; expected a finished clf run folder (it holds "
                         f"the files of each split). Pass the folder 'clf run' printed at the end.")
    try:
        data = json.loads(read_file(path, MAX_MANIFEST_BYTES).decode("utf-8"))
    except FileProblem as problem:
        raise ModelError(f"{str(path)!r} cannot be used: {problem.reason}.") from None
    except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
        raise ModelError(f"{str(path)!r} is not valid JSON ({exc}); the run folder is damaged. Restore the file "
                         f"or train again.") from None
    validate_manifest(data, path)
    return data


def validate_manifest(data: Any, path: Path | str = MANIFEST_FILE) -> None:
    """Type-check the fields clf reads back; a ModelError names the first bad one (paths are
    checked in ``split_files``)."""

    def bad(field: str, value: Any, expected: str) -> ModelError:
        shown = repr(value)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        return ModelError(f"{str(path)!r} is not a valid clf run record: {field} is {shown}; expected {expected}. "
                          f"Restore the file or train again.")

    if not isinstance(data, dict):
        raise bad("the record", data, "a JSON object")
    source = data.get("data", {})
    if not isinstance(source, dict) or not isinstance(source.get("source", ""), str):
        raise bad("data", source, "an object whose 'source' is the data folder")
    split = data.get("split", {})
    if not isinstance(split, dict):
        raise bad("split", split, "an object: split -> class -> list of files")
    for name, per_class in split.items():
        if not isinstance(per_class, dict):
            raise bad(f"split[{name!r}]", per_class, "an object: class -> list of files")
        for label, files in per_class.items():
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise bad(f"split[{name!r}][{label!r}]", files, "a list of file paths")
    training = data.get("training", {})
    head = training.get("head", {}) if isinstance(training, dict) else None
    if not isinstance(head, dict):
        raise bad("training", training, "an object whose 'head' is an object")
    l2 = head.get("l2")
    number = isinstance(l2, (int, float)) and not isinstance(l2, bool)
    if l2 is not None and not (number and 0 <= l2 < math.inf):
        raise bad("training.head.l2", l2, "a number of 0 or more")
    runtime = data.get("runtime", {})
    if not isinstance(runtime, dict) or not isinstance(runtime.get("name", ""), (str, type(None))):
        raise bad("runtime", runtime, "an object whose 'name' is a runtime name")
    for key, kind, expected in (("artifacts", dict, "an object"), ("exports_added", list, "a list")):
        if key in data and not isinstance(data[key], kind):
            raise bad(key, data[key], expected)


def split_files(manifest: dict[str, Any], class_names: list[str], root: Path,
                path: Path | str = MANIFEST_FILE) -> dict[str, tuple[list[Path], list[int], list[str]]]:
    """``{split: (files, class indices, paths as recorded)}`` for the classes of ``class_names``,
    every file inside ``root`` (else a DataError naming ``path``)."""
    out: dict[str, tuple[list[Path], list[int], list[str]]] = {}
    if Path(root).is_file():  # a labels file (--data labels.csv): its paths are relative to its folder
        root = Path(root).parent
    for split, per_class in manifest.get("split", {}).items():
        listed = [(inside_folder(root, rel, str(path)), index)
                  for index, name in enumerate(class_names) for rel in per_class.get(name, [])]
        files = [file for file, _ in listed]
        names = [file.relative_to(os.path.abspath(root)).as_posix() for file in files]
        out[split] = (files, [index for _, index in listed], names)
    return out
