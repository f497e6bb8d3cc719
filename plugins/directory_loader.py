"""The default data loader: one folder per class, under ``--data`` itself (then a seeded,
stratified validation split is drawn) or under train/val(/test) folders (``clf.find_layout``)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from clf import (
    DataError,
    DatasetBundle,
    IMAGE_SUFFIXES,
    Split,
    check_data_root,
    class_folders,
    files_dataset,
    find_layout,
    hookimpl,
    is_image_file,
)


def scan_classes(folder: Path, skip: Collection[str] = frozenset(), substitute: Mapping[str, str] | None = None) -> dict[str, list[Path]]:
    """Class name -> image files, for a folder of class folders (sorted by name), without ``skip``
    (quarantined); files in ``substitute`` (the doctor's converted copies) are kept even when
    tf.data cannot decode their suffix."""
    substitute = substitute or {}
    return {sub.name: sorted(p for p in sub.rglob("*")
                             if str(p) not in skip and (str(p) in substitute or is_image_file(p)))
            for sub in class_folders(folder)}


def stratified_split(per_class: dict[str, list[Path]], fraction: float, seed: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Per class, a seeded shuffle puts ``round(n * fraction)`` (at least 1) files in val."""
    rng = random.Random(seed)
    train: dict[str, list[Path]] = {}
    val: dict[str, list[Path]] = {}
    for name, files in per_class.items():
        if len(files) < 2:
            raise DataError(
                f"Class {name!r} has {len(files)} image(s); a validation split needs at least "
                f"2 per class. Add images to that class folder, or provide a separate val/ folder."
            )
        shuffled = files[:]
        rng.shuffle(shuffled)
        n_val = min(max(1, round(len(files) * fraction)), len(files) - 1)
        val[name], train[name] = sorted(shuffled[:n_val]), sorted(shuffled[n_val:])
    return train, val


def _split(per_class: dict[str, list[Path]], class_names: list[str]) -> Split:
    pairs = [(str(f), index) for index, name in enumerate(class_names) for f in per_class.get(name, [])]
    return Split([f for f, _ in pairs], [index for _, index in pairs])


def load_directory(source: str | Path, *, image_size: Sequence[int], seed: int, validation_split: float,
                   skip: Collection[str] = frozenset(), substitute: Mapping[str, str] | None = None,
                   **_: Any) -> DatasetBundle:
    """Folder-per-class images (class folders, or train/val/test folders of them). ``skip`` and
    ``substitute`` (from clf.data.doctor): files to leave out and to read from a converted copy."""
    root = Path(source)
    check_data_root(root, source)
    skip, substitute = frozenset(map(str, skip)), {str(k): str(v) for k, v in (substitute or {}).items()}
    layout = find_layout(root)
    train_dir, val_dir, test_dir = layout["train"], layout.get("validation"), layout.get("test")
    train_classes = scan_classes(train_dir, skip, substitute)
    class_names = sorted(train_classes)
    undecodable = [n for n in class_names if n != n.encode("utf-8", "surrogateescape").decode("utf-8", "replace")]
    if undecodable:  # class names go into labels.json and every report: they must be text
        raise DataError(
            f"Class folder name(s) {', '.join(ascii(n) for n in undecodable)} in {ascii(str(train_dir or root))} "
            f"are not valid UTF-8; expected text, since class names are saved with the model. "
            f"Rename the folder(s)."
        )
    if len(class_names) < 2:
        raise DataError(
            f"{str(train_dir)!r} has {len(class_names)} class folder(s) "
            f"({', '.join(class_names) or 'none'}); expected at least 2, one folder of images "
            f"per class. Add a folder per class."
        )
    empty = [n for n, files in train_classes.items() if not files]
    if empty:
        raise DataError(
            f"Class folder(s) {', '.join(map(repr, empty))} in {str(train_dir)!r} hold "
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}{'; bad files were quarantined' if skip else ''}); "
            f"expected at least one per class. Add images or remove the empty folder."
        )
    if val_dir is not None:
        val_classes = scan_classes(val_dir, skip, substitute)
        extra = sorted(set(val_classes) - set(class_names))
        if extra:
            raise DataError(
                f"{str(val_dir)!r} has class folder(s) {', '.join(map(repr, extra))} that "
                f"{str(train_dir)!r} lacks; expected the same classes "
                f"({', '.join(class_names)}). Rename or remove them."
            )
    else:
        train_classes, val_classes = stratified_split(train_classes, validation_split, seed)
    splits = {"train": _split(train_classes, class_names), "validation": _split(val_classes, class_names)}
    if test_dir is not None:
        splits["test"] = _split(scan_classes(test_dir, skip, substitute), class_names)
    datasets = {name: files_dataset(s.files, s.labels, image_size, substitute) if len(s) else None
                for name, s in splits.items()}
    return DatasetBundle(class_names, datasets["train"], datasets.get("validation"),
                         datasets.get("test"), splits,
                         make_dataset=lambda files, labels: files_dataset(files, labels, image_size, substitute))


@hookimpl
def register_data_loaders(register: Callable[..., None]) -> None:
    register("directory", load_directory, aliases=("folder", "dir"),
             description="One folder per class; train/val(/test) folders or a seeded split")
