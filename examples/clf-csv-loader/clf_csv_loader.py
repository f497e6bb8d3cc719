"""clf plugin: data loader ``csv``, images and labels listed in a CSV manifest.

``--loader csv --data manifest.csv`` where the CSV has a header with the columns ``path``
and ``label`` and optionally ``split`` (``train``, ``val``/``validation``, ``test``; empty
means train). Relative paths are relative to the CSV file's folder, so a manifest travels
with its images. Without any validation rows, a stratified, seeded split is drawn from the
training rows (``--validation-split``).
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path

import clf
from clf import IMAGE_SUFFIXES, DatasetBundle, Split, files_dataset

__version__ = "0.1.0"

SPLITS = {"": "train", "train": "train", "training": "train", "val": "validation",
          "valid": "validation", "validation": "validation", "test": "test"}


def read_manifest(source) -> dict[str, list[tuple[str, str]]]:
    """split -> [(absolute image path, label)], checked row by row."""
    manifest = Path(source)
    if not manifest.is_file():
        raise clf.DataError(
            f"CSV manifest {str(source)!r} does not exist or is not a file; expected a .csv "
            f"file with the columns path,label (and optionally split). Pass --data FILE.csv."
        )
    rows: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with manifest.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise clf.DataError(
                f"{str(manifest)!r} has the columns {', '.join(columns) or 'none'}; expected a "
                f"header row with 'path' and 'label' (and optionally 'split'). Add the header."
            )
        for line, raw in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            path, label, split = row["path"], row["label"], row.get("split", "").lower()
            if not path and not label:
                continue  # blank line
            where = f"{manifest.name} line {line}"
            if not path or not label:
                raise clf.DataError(f"{where} has path {path!r} and label {label!r}; expected both. Fill in the row.")
            if split not in SPLITS:
                raise clf.DataError(
                    f"{where} has split {split!r}; expected train, val, validation, test or "
                    f"empty (train). Fix the split column."
                )
            file = Path(path) if Path(path).is_absolute() else manifest.parent / path
            if not file.is_file():
                raise clf.DataError(
                    f"{where} names {path!r}, which does not exist (looked at {str(file)!r}); "
                    f"expected a path relative to the CSV's folder. Fix the path or the row."
                )
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise clf.DataError(
                    f"{where} names {path!r}, which is not an image file; expected one of "
                    f"{', '.join(sorted(IMAGE_SUFFIXES))}. Remove the row."
                )
            rows[SPLITS[split]].append((str(file), label))
    return rows


def _stratified(rows, fraction: float, seed: int):
    """Per label, a seeded shuffle puts round(n * fraction) (at least 1) rows in validation."""
    rng = random.Random(seed)
    by_label = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    train, val = [], []
    for label in sorted(by_label):
        items = sorted(by_label[label])
        if len(items) < 2:
            raise clf.DataError(
                f"Label {label!r} has {len(items)} training row(s); a validation split needs at "
                f"least 2 per label. Add rows, or mark validation rows with split=val."
            )
        rng.shuffle(items)
        n_val = min(max(1, round(len(items) * fraction)), len(items) - 1)
        val += items[:n_val]
        train += items[n_val:]
    return train, val


def load_csv(source, *, image_size, seed, validation_split, **_):
    """Images listed in a CSV manifest: path,label[,split], paths relative to the CSV."""
    rows = read_manifest(source)
    train_rows = rows.get("train", [])
    class_names = sorted({label for _, label in train_rows})
    if len(class_names) < 2:
        raise clf.DataError(
            f"{str(source)!r} has {len(class_names)} label(s) among its training rows "
            f"({', '.join(class_names) or 'none'}); expected at least 2. Add rows for more labels."
        )
    if not rows.get("validation"):
        train_rows, rows["validation"] = _stratified(train_rows, validation_split, seed)
    index = {name: i for i, name in enumerate(class_names)}
    splits, datasets = {}, {}
    for name, split_rows in (("train", train_rows), ("validation", rows["validation"]),
                             ("test", rows.get("test", []))):
        unknown = sorted({label for _, label in split_rows} - set(index))
        if unknown:
            raise clf.DataError(
                f"{str(source)!r} has {name} rows labelled {', '.join(map(repr, unknown))}, a "
                f"label no training row has; expected only {', '.join(class_names)}. Fix those rows."
            )
        split_rows = sorted(split_rows, key=lambda r: (index[r[1]], r[0]))
        if split_rows:
            splits[name] = Split([f for f, _ in split_rows], [index[l] for _, l in split_rows])
            datasets[name] = files_dataset(splits[name].files, splits[name].labels, image_size)
    return DatasetBundle(class_names, datasets["train"], datasets.get("validation"),
                         datasets.get("test"), splits)


@clf.hookimpl
def register_data_loaders(register):
    register("csv", load_csv, aliases=("manifest",),
             description="A CSV manifest: path,label[,split], paths relative to the CSV")
