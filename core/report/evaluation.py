"""Run a model over labelled images and build the evaluation report (``clf.report.metrics``):
``evaluate_dataset`` for the engine after training, ``evaluate_folder`` for ``clf evaluate``
(with the known score's verdicts, ``unknown_report``, when the model has one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from clf.artifacts.labels import is_known, read_labels
from clf.data.images import is_image_file
from clf.data.layout import class_folders
from clf.errors import DataError, DataNotFoundError, UsageError
from clf.events import Observer
from clf.artifacts.predict import load_predictor, predict_files, Prediction, resolve_artifact
from clf.infer.decode import collect_images
from clf.infer.forward import BatchFn
from clf.report.metrics import KNOWN_TPR, auroc, cross_entropy, evaluation_report, fpr_at_tpr
from clf.data.doctor import plainest_first
from clf.data.filecheck import FileProblem, check_file
from clf.files import file_sha256
from clf.report.runrecord import write_evaluation


def evaluate_dataset(predict: BatchFn, dataset: Any, class_names: list[str], observer: Observer | None = None,
                     phase: str = "evaluate") -> dict[str, Any]:
    """``predict`` (``clf.infer.forward.batch_fn``) on each ``(images, labels)`` batch, and the report."""
    y_true, p = predict_dataset(predict, dataset, len(class_names), observer, phase)
    return evaluation_report(y_true, p, class_names, loss=cross_entropy(y_true, p))


def predict_dataset(predict: BatchFn, dataset: Any, num_classes: int, observer: Observer | None = None,
                    phase: str = "evaluate") -> tuple[np.ndarray, np.ndarray]:
    """``(labels [n], probabilities [n, classes])`` of ``predict`` on each ``(images, labels)`` batch, in order."""
    observer = observer or Observer()
    labels, probs = [], []
    for images, y in dataset:
        probs.append(np.asarray(predict(np.asarray(images))))
        labels.append(np.asarray(y))
        observer.phase_advance(phase, len(labels[-1]))
    y_true = np.concatenate(labels) if labels else np.zeros(0, int)
    p = np.concatenate(probs) if probs else np.zeros((0, num_classes))
    return y_true, p


@dataclass
class FolderEvaluation:
    report: dict[str, Any]
    output: Path
    files: list[Path] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    notes: list[str] = field(default_factory=list)  # e.g. a runtime fallback taken
    predictions: list[Prediction] = field(default_factory=list)  # one per image counted (``once_each``), in order


def check_paths(model: str | Path, data: str | Path, unknown_data: str | Path | None = None) -> None:
    """The model (a clf artifact) and data folders exist, and a model given ``unknown_data`` has a
    known score: checked before the slow TensorFlow import."""
    folder = resolve_artifact(model)[0]
    from clf.data.labels_file import is_labels_file

    if is_labels_file(data) and Path(data).is_file():  # a labels file (clf.report.multilabel.evaluate_labels_file)
        pass
    elif not Path(data).is_dir():
        raise DataNotFoundError(f"Data directory {str(data)!r} does not exist or is not a folder; "
                                f"expected a folder of class folders. Pass --data DIR.")
    if unknown_data is None:
        return
    if not Path(unknown_data).is_dir():
        raise DataNotFoundError(f"Unknown-photo folder {str(unknown_data)!r} does not exist or is not a folder; "
                                f"expected a folder of photos of none of the model's classes. Pass "
                                f"--unknown-data DIR.")
    if not read_labels(folder).get("unknown"):
        raise UsageError(
            f"--unknown-data {str(unknown_data)!r}: the model in {str(folder)!r} has no known score (its "
            f"labels.json has no 'unknown'; trained with --unknown off, before clf had one, or with a "
            f"fine-tuned backbone), so nothing can tell its known photos from unknown ones. Expected a "
            f"model trained with --unknown auto (the default). Train again, or drop --unknown-data.")


def unknown_report(labels: dict[str, Any], y_true: np.ndarray, probabilities: np.ndarray, known: np.ndarray,
                   unknown: np.ndarray | None = None) -> dict[str, Any]:
    """What the known score (``known``: one per labelled image) decides on labelled images: the
    share rejected as unknown and the accuracy among those accepted; with ``unknown`` (the scores
    of photos of no trained class), how well it separates them (AUROC, FPR@95TPR: the share of
    unknowns scored at or above what keeps 95% of the known) and the share of them accepted."""
    record = labels["unknown"]
    accepted = np.array([is_known(labels, float(s)) for s in known], bool)
    correct = np.asarray(probabilities).argmax(axis=1) == np.asarray(y_true) if len(known) else np.zeros(0, bool)
    out: dict[str, Any] = {
        "score": record.get("score"), "threshold": float(record["threshold"]),
        "known_images": int(len(known)),
        "known_rejected": float(1.0 - accepted.mean()) if len(known) else 0.0,
        "known_accepted": int(accepted.sum()),
        # Accuracy over the accepted images alone (None when none is accepted).
        "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else None,
    }
    if unknown is not None:
        taken = np.array([is_known(labels, float(s)) for s in unknown], bool)
        separable = len(known) > 0 and len(unknown) > 0
        out.update({
            "unknown_images": int(len(unknown)),
            "unknown_accepted": float(taken.mean()) if len(unknown) else 0.0,
            "auroc": auroc(known, unknown) if separable else None,
            "fpr_at_95_tpr": fpr_at_tpr(known, unknown, KNOWN_TPR) if separable else None,
        })
    return out


def once_each(files: list[Path], labels: list[int]) -> tuple[list[Path], list[int], list[tuple[Path, Path]]]:
    """``(files, labels, [(left out, same bytes as)])``: exact duplicates counted once, keeping
    the copy the dataset doctor keeps, so counts match clf run's and no photo weighs double."""
    first: dict[str, int] = {}
    dropped: dict[int, int] = {}
    for i in sorted(range(len(files)), key=lambda i: (labels[i], plainest_first(files[i]))):
        try:
            check_file(files[i])  # nothing unsafe is hashed: predict gives such files their reason
            digest = file_sha256(files[i])
        except (FileProblem, OSError):
            continue
        if digest in first:
            dropped[i] = first[digest]
        else:
            first[digest] = i
    kept = [i for i in range(len(files)) if i not in dropped]
    return ([files[i] for i in kept], [labels[i] for i in kept],
            [(files[i], files[j]) for i, j in sorted(dropped.items())])


def labelled_files(folder: Path, class_names: list[str]) -> tuple[list[Path], list[int]]:
    """Images under each class folder of ``folder``, labelled by the model's class order.

    Folders are matched by name, never position: an unknown folder is an error; a class
    without one has support 0."""
    subdirs = class_folders(folder)
    unknown = [p.name for p in subdirs if p.name not in class_names]
    if unknown:
        raise DataError(
            f"{str(folder)!r} has class folder(s) {', '.join(map(repr, unknown))} that the model does not "
            f"know; expected only its classes ({', '.join(class_names)}). Point --data at a folder of "
            f"those class folders (e.g. the val/ or test/ folder of a dataset)."
        )
    pairs = [(p, class_names.index(sub.name)) for sub in subdirs
             for p in sorted(sub.rglob("*")) if is_image_file(p)]
    files, labels = [p for p, _ in pairs], [label for _, label in pairs]
    if not files:
        raise DataError(f"{str(folder)!r} holds no images in class folders named after the model's classes "
                        f"({', '.join(class_names)}). Pass a labelled folder.")
    return files, labels


def default_output(model_path: Path, data: Path) -> Path:
    """``<run folder>/evaluations/<timestamp>-<data folder name>``, never an existing folder."""
    run_dir = model_path if model_path.is_dir() else model_path.parent
    base = run_dir / "evaluations" / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{Path(data).resolve().name}"
    path, n = base, 2
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


# host: a clf.host.manager.PluginHost (report imports no host, so Any here)
def evaluate_folder(model: str | Path, data: str | Path, *, output: str | Path | None = None,
                    batch_size: int = 32, host: Any = None, observer: Observer | None = None,
                    trust_artifact: bool = False, runtime: str = "tensorflow",
                    unknown_data: str | Path | None = None) -> FolderEvaluation:
    """Evaluate an artifact on a labelled folder and save the reports
    (``trust_artifact``: ``load_predictor``'s ``trust``; ``runtime``: as there). A model with a
    known score gets ``report["unknown"]`` (``unknown_report``); ``unknown_data``: a folder of
    photos of none of its classes (any layout), to measure how well the score rejects them."""
    observer = observer or Observer()
    check_paths(model, data, unknown_data)
    out = Path(output) if output else default_output(Path(model), Path(data))
    if out.exists() and any(out.iterdir()):  # before the model loads and every image is hashed
        raise UsageError(f"Output folder {str(out)!r} already exists and is not empty; expected a new or "
                         f"empty folder so no earlier evaluation is overwritten. Pass another --output.")
    from clf.data.labels_file import is_labels_file

    if is_labels_file(data) and unknown_data is None:  # rows path,labels; multi-label models too
        from clf.report.multilabel import evaluate_labels_file

        return evaluate_labels_file(model, data, out, batch_size=batch_size, host=host, observer=observer,
                                    trust_artifact=trust_artifact, runtime=runtime)
    predictor = load_predictor(model, host, fmt="auto", trust=trust_artifact, runtime=runtime)
    files, labels, copies = once_each(*labelled_files(Path(data), predictor.class_names))
    strangers = collect_images(unknown_data) if unknown_data is not None else []
    if unknown_data is not None and not strangers:
        raise DataError(f"--unknown-data {str(unknown_data)!r} holds no images; expected photos of none of the "
                        f"model's classes (any folder layout). Pass a folder with images.")
    observer.phase_start("predict", total=len(files) + len(strangers), unit="image")
    progress = lambda n: observer.phase_advance("predict", n)  # noqa: E731
    results = predict_files(predictor, files, batch_size, progress=progress)
    others = predict_files(predictor, strangers, batch_size, progress=progress) if strangers else []
    observer.phase_end("predict")
    ok = [i for i, r in enumerate(results) if r.error is None]
    probs, known = _outputs(predictor.labels, [results[i] for i in ok])
    y = np.array([labels[i] for i in ok], int)
    report = evaluation_report(y, probs, predictor.class_names, loss=cross_entropy(y, probs))
    report.update(data=str(data), model=str(model), runtime=predictor.runtime,
                  duplicates_counted_once=len(copies))
    if known is not None:
        unknown = _outputs(predictor.labels, [r for r in others if r.error is None])[1] if strangers else None
        report["unknown"] = unknown_report(predictor.labels, y, probs, known, unknown)
        if unknown_data is not None:
            report["unknown"]["unknown_data"] = str(unknown_data)
    notes = list(predictor.notes)
    if copies:
        shown = "; ".join(f"{a} (same bytes as {b})" for a, b in copies[:5])
        notes.append(f"{len(copies)} exact duplicate file(s) counted once, as clf run counts them, so the "
                     f"scores weigh each photo once: {shown}{' ...' if len(copies) > 5 else ''}.")
    out.mkdir(parents=True, exist_ok=True)
    written = write_evaluation(out, {"evaluation": report}, "evaluation")
    return FolderEvaluation(report, out, written, [(r.path, r.error) for r in [*results, *others] if r.error],
                            notes=notes, predictions=results)


def _outputs(labels: dict[str, Any], results: list[Prediction]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(probabilities [n, classes], known scores [n] or None)`` of decoded predictions."""
    probs = np.array([r.probabilities for r in results], float).reshape(len(results), len(labels["class_names"]))
    if not labels.get("unknown") or any(r.known_score is None for r in results):
        return probs, None
    return probs, np.array([r.known_score for r in results], float)
