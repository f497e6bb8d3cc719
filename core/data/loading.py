"""The data phase: doctor, loader, ``--classes`` check. ``clf run --dry-run`` calls ``load_data``
too, so it reports exactly what training would see."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TYPE_CHECKING

from clf.data import doctor
from clf.data.images import DatasetBundle, ImageSize
from clf.errors import DataError
from clf.events import Observer
from clf.data.layout import check_data_root, class_folders, find_layout

if TYPE_CHECKING:
    from clf.config import RunConfig


@dataclass
class LoadedData:
    bundle: DatasetBundle
    counts: dict[str, dict[str, int]]  # split -> class -> images
    report: Any  # clf.data.doctor.DoctorReport, or None for a loader that streams

    @property
    def n_train(self) -> int:
        return len(self.bundle.splits["train"]) if "train" in self.bundle.splits else 0


# loader: a clf.host.registry.DataLoader (data imports no host, so Any here)
def load_data(config: RunConfig, loader: Any, image_size: ImageSize, observer: Observer) -> LoadedData:
    observer.phase_start("data")
    t0 = time.perf_counter()
    report = doctor.preflight(config, loader, observer)
    files = {"skip": report.skip, "substitute": report.substitute} if report else {}
    bundle = loader.load(config.data, image_size=image_size, seed=config.seed,
                         validation_split=config.validation_split, **files, **task_option(config, loader))
    check_classes(config.classes, config.data, bundle.class_names)
    counts = {name: bundle.counts(name) for name in bundle.splits}
    # images per split: with multi-label data the per-class counts add up to more
    observer.phase_end("data", class_names=bundle.class_names, counts=counts,
                       images={name: len(s) for name, s in bundle.splits.items()}, seconds=time.perf_counter() - t0)
    return LoadedData(bundle, counts, report)


def task_option(config: RunConfig, loader: Any) -> dict[str, str]:
    """``task`` for a loader that takes it (the labels file's); another one with ``--task
    multilabel`` is an error, since it gives one class an image."""
    import inspect

    if "task" in inspect.signature(loader.load).parameters:
        return {"task": config.task}
    if config.task == "multilabel":
        raise DataError(
            f"--task multilabel needs a loader that reads several labels an image, but loader {loader.name!r} "
            f"gives one class an image; expected a labels file (--data labels.csv, rows path,labels with "
            f"labels separated by ';'). Pass one, or drop --task.")
    return {}


def check_classes(expected: int | None, data: str, class_names: list[str]) -> None:
    """``--classes N`` must match the class folders found (omitted: inferred)."""
    if expected is not None and expected != len(class_names):
        raise DataError(
            f"--classes {expected} but {data} has {len(class_names)} class "
            f"folders ({', '.join(class_names)}). Pass --classes {len(class_names)} "
            f"or omit --classes to infer it."
        )


def check_early(config: RunConfig) -> None:
    """Data checks needing no TensorFlow, run before importing it (built-in folder loader only):
    ``--data`` exists and ``--classes`` matches. They run again at load time."""
    from clf.data.labels_file import is_labels_file

    if config.loader != "directory" or is_labels_file(config.data):  # a plugin's loader may read from anywhere
        return
    root = Path(config.data)
    check_data_root(root, config.data)
    check_classes(config.classes, config.data, [p.name for p in class_folders(find_layout(root)["train"])])
