"""The run record: the files that let someone reproduce or audit a run weeks later. Each is
written atomically, so a crash never leaves a half-written file that looks complete."""

from __future__ import annotations

import hashlib
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence, TYPE_CHECKING

from clf.files import file_hash, file_sha256, write_json, write_text
from clf import __version__
from clf.config import config_to_toml
from clf.data.guardrails import claim_run_dir
from clf.report.metrics import confusion_matrix_csv
from clf.report.plots import plot_confusion_matrix, plot_training_curves, plot_unknown_scores
from clf.report.history import history_csv

if TYPE_CHECKING:
    from clf.config import RunConfig
    from clf.report.history import EpochRecord

MANIFEST_FORMAT = "clf-manifest/1"
PREDICTIONS_FORMAT = "clf-predictions/1"
PREDICTIONS = "predictions.json"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"clf": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    if "tensorflow" not in out and "tensorflow" in sys.modules:
        out["tensorflow"] = sys.modules["tensorflow"].__version__
    return out


def _relative(path: str, root: Path) -> str:
    if root.is_file():  # a labels file: its paths are relative to its folder
        root = root.parent
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def split_record(splits: Mapping[str, Any], class_names: list[str], data_root: str) -> dict[str, dict[str, list[str]]]:
    """Which file went to which split: ``{split: {class: [paths relative to --data]}}``."""
    root = Path(data_root)
    out: dict[str, dict[str, list[str]]] = {name: {c: [] for c in class_names} for name in splits}
    for name, split in splits.items():
        for f, label in zip(split.files, split.labels):
            out[name][class_names[label]].append(_relative(f, root))
    return out


def dataset_fingerprint(splits: Mapping[str, Any], data_root: str) -> dict[str, Any]:
    """sha256 over each file's sorted (split, path, class, content sha256): same images, same fingerprint."""
    root = Path(data_root)
    entries = sorted(
        (name, _relative(f, root), int(label), file_sha256(f))  # hashed once per run: the doctor read it first
        for name, split in splits.items() for f, label in zip(split.files, split.labels)
    )
    digest = hashlib.sha256()
    for entry in entries:
        # surrogateescape: a file name that is not UTF-8 hashes as its own bytes
        digest.update("\t".join(map(str, entry)).encode("utf-8", "surrogateescape") + b"\n")
    return {"sha256": digest.hexdigest(), "files": len(entries),
            "method": "sha256 of sorted 'split<TAB>relative path<TAB>label<TAB>file sha256' lines"}


def weights_record(weights: str) -> dict[str, Any]:
    """Where the backbone weights came from and, for a file, its sha256."""
    if weights == "none":
        return {"source": "none", "sha256": None, "note": "random initialisation"}
    if weights == "imagenet":
        return {"source": "imagenet", "sha256": None,
                "note": "Keras Applications ImageNet weights from the Keras cache (keras.utils.get_file checks their hash)"}
    path = Path(weights)
    return {"source": "file", "path": str(path.resolve()), "sha256": file_hash(path) if path.is_file() else None}


def build_manifest(*, config: RunConfig, class_names: list[str], counts: dict[str, Any], splits: Mapping[str, Any],
                   seconds: dict[str, float], backbone: str, image_size: Sequence[int], started: datetime,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "created": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "seed": config.seed,
        "backbone": backbone,
        "image_size": [int(image_size[0]), int(image_size[1])],
        "class_names": list(class_names),
        "class_counts": counts,
        "data": {"source": str(config.data), "fingerprint": dataset_fingerprint(splits, config.data)},
        "split": split_record(splits, class_names, config.data),
        "weights": weights_record(config.weights),
        "wall_seconds": {k: round(v, 3) for k, v in seconds.items()},
        **(extra or {}),
    }


def write_config(run_dir: Path, config: RunConfig) -> Path:
    # The .clf-run marker goes first, so --force only ever replaces folders clf made.
    claim_run_dir(run_dir)
    return write_text(Path(run_dir) / "config.toml", config_to_toml(config))


def write_evaluation(directory: Path, reports: dict[str, dict], primary: str | None,
                     extra: dict[str, Any] | None = None) -> list[Path]:
    """``metrics.json`` (every split, and ``extra``'s keys beside them: the --folds report, the
    validation images' known-score acceptance) and the primary split's confusion matrix as CSV and PNG."""
    directory = Path(directory)
    written = [write_json(directory / "metrics.json", {"evaluated_on": primary, "splits": reports, **(extra or {})})]
    if primary is not None and reports[primary].get("task") != "multilabel":  # multi-label: write_pr_curves
        report = reports[primary]
        written += [write_text(directory / "confusion_matrix.csv", confusion_matrix_csv(report)),
                    plot_confusion_matrix(report, directory / "confusion_matrix.png",
                                          title=f"{primary} confusion matrix")]
    return written


PR_CURVES = "pr_curves.png"


def write_pr_curves(run_dir: Path, targets: Any, scores: Any, class_names: list[str], report: dict[str, Any],
                    split: str) -> Path:
    """``pr_curves.png``: each class's precision-recall curve on ``split``, its threshold marked."""
    from clf.report.plots import plot_pr_curves

    return plot_pr_curves(targets, scores, class_names, report, Path(run_dir) / PR_CURVES, title=f"{split} precision-recall")


def write_history(run_dir: Path, records: Sequence[EpochRecord]) -> list[Path]:
    """``history.csv``, and ``training_curves.png`` when some phase had epochs."""
    run_dir = Path(run_dir)
    written = [write_text(run_dir / "history.csv", history_csv(records))]
    if records:
        written.append(plot_training_curves(records, run_dir / "training_curves.png"))
    return written


UNKNOWN_PLOT = "unknown_scores.png"


def write_unknown_scores(run_dir: Path, record: dict[str, Any], training: Any, validation: Any) -> Path:
    """``unknown_scores.png``: the known score's histogram (``record``: labels.json's "unknown";
    ``training``: out-of-fold raw scores; ``validation``: raw scores or None)."""
    return plot_unknown_scores(training, validation, float(record["score_threshold"]), Path(run_dir) / UNKNOWN_PLOT,
                               kind=str(record["score"]), accept_known=float(record["accept_known"]))


def write_predictions(run_dir: Path, predictions: Mapping[str, tuple[Any, Any]], splits: Mapping[str, Any],
                      class_names: list[str], data_root: str) -> list[Path]:
    """``predictions.json``: each evaluated image's file (relative to --data), content sha256,
    label, predicted class and its probability, per split, so ``clf compare`` pairs runs image
    by image without TensorFlow. A split whose images are not files in the evaluated order
    (a loader without file lists) is left out."""
    import numpy as np

    root = Path(data_root)
    record: dict[str, Any] = {"format": PREDICTIONS_FORMAT, "class_names": list(class_names), "splits": {}}
    for name, (labels, probs) in predictions.items():
        split = splits.get(name)
        if split is None or len(split.files) != len(labels) or list(split.labels) != [int(y) for y in labels]:
            continue
        predicted = np.asarray(probs).argmax(axis=1)
        record["splits"][name] = [
            {"file": _relative(f, root), "sha256": file_sha256(f), "label": class_names[int(y)],
             "predicted": class_names[int(k)], "probability": round(float(p[k]), 6)}
            for f, y, k, p in zip(split.files, labels, predicted, probs)]
    if not record["splits"]:
        return []
    return [write_json(Path(run_dir) / PREDICTIONS, record)]
