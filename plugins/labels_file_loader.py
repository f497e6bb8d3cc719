"""The labels-file data loader: ``--data labels.csv`` (or ``.jsonl``), one row per image,
``path,labels`` with paths relative to the file and labels separated by ``;``. Single-label
or multi-label (``--task auto|single|multilabel``; auto: multi-label when any row has two
labels). Rows without a ``split`` get a seeded split, stratified by label set."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from clf import DatasetBundle, Split, check_labels_rows, files_dataset, hookimpl, read_labels_file, resolve_task
from clf import DataError


def split_rows(rows: list[Any], fraction: float, seed: int) -> dict[str, list[Any]]:
    """Rows by split: given splits kept; the rest shuffled (seeded) per label set, about
    ``fraction`` of each set of two or more rows to validation (a label set seen once trains)."""
    out: dict[str, list[Any]] = {"train": [], "validation": [], "test": []}
    groups: dict[tuple[str, ...], list[Any]] = {}
    for row in rows:
        if row.split is not None:
            out[row.split].append(row)
        else:
            groups.setdefault(tuple(sorted(row.labels)), []).append(row)
    given_validation = bool(out["validation"])
    rng = random.Random(seed)
    for key in sorted(groups):
        group = groups[key][:]
        if given_validation or len(group) < 2:
            out["train"].extend(group)
            continue
        rng.shuffle(group)
        n_val = min(max(1, round(len(group) * fraction)), len(group) - 1)
        out["validation"].extend(group[:n_val])
        out["train"].extend(group[n_val:])
    return {name: sorted(part, key=lambda r: r.line) for name, part in out.items() if part}


def load_labels_file(source: str | Path, *, image_size: Sequence[int], seed: int, validation_split: float,
                     skip: Collection[str] = frozenset(), substitute: Mapping[str, str] | None = None,
                     task: str = "auto", **_: Any) -> DatasetBundle:
    """Images listed in a labels file. ``skip`` and ``substitute``: the dataset doctor's quarantine
    and converted copies."""
    skip, substitute = frozenset(map(str, skip)), {str(k): str(v) for k, v in (substitute or {}).items()}
    every = read_labels_file(source)
    asked, task = task, resolve_task(task, every)
    rows = [r for r in every if str(r.path) not in skip]
    class_names = check_labels_rows(rows, task, source, allow_empty=asked == "multilabel")
    index = {name: i for i, name in enumerate(class_names)}
    by_split = split_rows(rows, validation_split, seed)
    if "train" not in by_split:
        raise DataError(f"Labels file {str(source)!r} has no training rows (every row's split is val or test); "
                        f"expected some rows with split train or none. Fix the split column.")
    missing = sorted(set(class_names) - {label for r in by_split["train"] for label in r.labels})
    if missing:
        raise DataError(f"Labels file {str(source)!r}: label(s) {', '.join(map(repr, missing))} appear in no "
                        f"training row; expected every label in training. Move rows to train.")
    multilabel = task == "multilabel"
    splits = {}
    for name, part in by_split.items():
        targets = [tuple(index[label] for label in r.labels if label in index) for r in part]
        splits[name] = Split([str(r.path) for r in part], [t[0] if t else 0 for t in targets],
                             targets if multilabel else None)
    datasets = {name: files_dataset(s.files, s.labels, image_size, substitute) for name, s in splits.items()}
    return DatasetBundle(class_names, datasets["train"], datasets.get("validation"), datasets.get("test"), splits,
                         make_dataset=lambda files, labels: files_dataset(files, labels, image_size, substitute),
                         task=task)


@hookimpl
def register_data_loaders(register: Callable[..., None]) -> None:
    # No "csv"/"jsonl" aliases: a third-party loader may well be called that (examples/ has one).
    register("labels_file", load_labels_file, aliases=("labels",),
             description="A labels file (.csv path,labels or .jsonl); single- or multi-label")
