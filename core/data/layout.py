"""Split and class folders of a folder-per-class dataset, shared by clf.data.doctor and
clf.plugins.directory_loader so both read the same folders. ``--data DIR`` holds class folders
or train/val(/test) folders of them (names compared case-insensitively)."""

from __future__ import annotations

from pathlib import Path

from clf.data.images import is_class_folder
from clf.errors import DataError, DataNotFoundError

SPLIT_FOLDER_NAMES = {
    "train": ("train", "training", "entrenamiento"),
    "validation": ("val", "valid", "validation", "validacion", "validación"),
    "test": ("test", "testing", "prueba"),
}


def class_folders(folder: Path) -> list[Path]:
    """The class folders of ``folder`` (``is_class_folder``: visible, not ``_removed/``), by name."""
    return sorted((p for p in Path(folder).iterdir() if is_class_folder(p)), key=lambda p: p.name)


def find_layout(root: Path) -> dict[str, Path]:
    """Split name -> folder of class folders; without split folders the root is train."""
    subs = class_folders(Path(root))
    found = {split: next((sub for sub in subs if sub.name.lower() in names), None)
             for split, names in SPLIT_FOLDER_NAMES.items()}
    layout = {"train": found["train"] or Path(root)}
    layout.update({split: folder for split, folder in found.items() if split != "train" and folder is not None})
    return layout


def check_data_root(root: Path, source: str | Path) -> None:
    """A clear error for a missing, non-folder or empty ``--data``."""
    if not root.is_dir():
        raise DataNotFoundError(
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
