"""The default data loader: one folder per class.

``--data DIR`` either holds the class folders directly (then a stratified, seeded
validation split is drawn) or train/val(/test) folders that each hold the class folders,
named as people name them (``train|training|entrenamiento``, ``val|valid|validation|
validacion``, ``test``), compared case-insensitively.
"""

from __future__ import annotations

import random
from pathlib import Path

from clf import hookimpl, DataError, DatasetBundle, files_dataset, is_class_folder, is_image_file, Split

TRAIN_NAMES = ("train", "training", "entrenamiento")
VAL_NAMES = ("val", "valid", "validation", "validacion", "validación")
TEST_NAMES = ("test", "testing", "prueba")


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if is_class_folder(p)),
                  key=lambda p: p.name)


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for sub in _subdirs(folder):
        if sub.name.lower() in names:
            return sub
    return None


def _images(class_dir: Path, skip=frozenset(), substitute=None) -> list[Path]:
    """Image files of one class. ``skip`` (quarantined by the doctor) are left out; files in
    ``substitute`` (converted copies the doctor made, e.g. of WebP files) are kept even when
    their suffix is not one tf.data decodes."""
    substitute = substitute or {}
    return sorted(p for p in class_dir.rglob("*")
                  if str(p) not in skip and (str(p) in substitute or is_image_file(p)))


def scan_classes(folder: Path, skip=frozenset(), substitute=None) -> dict[str, list[Path]]:
    """Class name -> image files, for a folder of class folders (sorted by name)."""
    return {sub.name: _images(sub, skip, substitute) for sub in _subdirs(folder)}


def find_layout(root: Path) -> dict[str, Path]:
    """Split name (train, validation, test) -> folder of class folders.

    Without train/val folders the root itself is the train folder (validation is drawn)."""
    root = Path(root)
    train_dir, val_dir, test_dir = _find(root, TRAIN_NAMES), _find(root, VAL_NAMES), _find(root, TEST_NAMES)
    layout = {"train": train_dir or root}
    if val_dir is not None:
        layout["validation"] = val_dir
    if test_dir is not None:
        layout["test"] = test_dir
    return layout


def stratified_split(per_class: dict[str, list[Path]], fraction: float, seed: int):
    """Per class, a seeded shuffle puts ``round(n * fraction)`` (at least 1) files in val."""
    rng = random.Random(seed)
    train, val = {}, {}
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
    files, labels = [], []
    for index, name in enumerate(class_names):
        for f in per_class.get(name, []):
            files.append(str(f))
            labels.append(index)
    return Split(files, labels)


def load_directory(source, *, image_size, seed, validation_split, skip=frozenset(), substitute=None, **_):
    """Folder-per-class images (class folders, or train/val/test folders of them).

    ``skip`` and ``substitute`` come from the dataset doctor (clf.data.doctor): files to leave
    out and files to read from a converted copy."""
    root = Path(source)
    check_data_root(root, source)
    skip, substitute = frozenset(map(str, skip)), {str(k): str(v) for k, v in (substitute or {}).items()}
    train_dir, val_dir, test_dir = _find(root, TRAIN_NAMES), _find(root, VAL_NAMES), _find(root, TEST_NAMES)
    train_classes = scan_classes(train_dir or root, skip, substitute)
    class_names = sorted(train_classes)
    if len(class_names) < 2:
        raise DataError(
            f"{str(train_dir or root)!r} has {len(class_names)} class folder(s) "
            f"({', '.join(class_names) or 'none'}); expected at least 2, one folder of images "
            f"per class. Add a folder per class."
        )
    empty = [n for n, files in train_classes.items() if not files]
    if empty:
        raise DataError(
            f"Class folder(s) {', '.join(map(repr, empty))} in {str(train_dir or root)!r} hold "
            f"no images (.jpg, .jpeg, .png, .bmp, .gif{'; bad files were quarantined' if skip else ''}); "
            f"expected at least one per class. Add images or remove the empty folder."
        )
    if val_dir is not None:
        val_classes = scan_classes(val_dir, skip, substitute)
        extra = sorted(set(val_classes) - set(class_names))
        if extra:
            raise DataError(
                f"{str(val_dir)!r} has class folder(s) {', '.join(map(repr, extra))} that "
                f"{str(train_dir or root)!r} lacks; expected the same classes "
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


def check_data_root(root: Path, source) -> None:
    """A missing, non-folder or empty ``--data`` is a clear error before anything else."""
    if not root.is_dir():
        raise DataError(
            f"Data directory {str(source)!r} does not exist or is not a folder; expected a "
            f"folder of class folders (or train/ and val/ folders of them). Pass --data DIR "
            f"(the bundled sample: examples/sample_data)."
        )
    if not any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise DataError(
            f"Data directory {str(source)!r} is empty; expected one folder of images per "
            f"class (e.g. {str(source)}/cat/*.jpg, {str(source)}/dog/*.jpg). Put the class "
            f"folders there or pass another --data."
        )


@hookimpl
def register_data_loaders(register):
    register("directory", load_directory, aliases=("folder", "dir"),
             description="One folder per class; train/val(/test) folders or a seeded split")
