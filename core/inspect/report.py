"""``inspect_run``: every finding about a run, written as ``RUN_DIR/inspect/``.

``index.html``, ``findings.json`` (the same data for scripts), ``thumbs/`` and ``heat/``. They
are written to a temporary folder first, so a failed inspection leaves the previous report
whole; moving in replaces or removes only the previous report's own files.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, TYPE_CHECKING, TypeVar

import numpy as np

from clf.errors import UsageError
from clf.events import Observer
from clf.train.oof import DEFAULT_FOLDS, out_of_fold, solved_out_of_fold
from clf.host.manager import get_host
from clf.inspect.saved_run import load_model, load_run, run_features
from clf.inspect.findings import label_issues, near_duplicates, outliers, reliability, worst_errors
from clf.inspect.known import known_scores
from clf.report.metrics import confusion_matrix
from clf.infer.forward import predict
from clf.inspect.cam import Heatmaps, decoded, thumbnail_size, write_overlay, write_thumbnail
from clf.files import write_json, write_text

if TYPE_CHECKING:
    from clf.host.manager import PluginHost
    from clf.train.oof import OutOfFold
    from clf.inspect.saved_run import RunModel, SavedRun
    from clf.train.features import SplitFeatures

_T = TypeVar("_T")

FORMAT = "clf-inspect/1"
FOLDER = "inspect"
# How many of each finding the page shows (findings.json has every flagged one).
SHOWN = {"label_issues": 200, "worst_errors": 48, "outliers": 48, "near_duplicates": 100}


@dataclass
class InspectResult:
    run_dir: Path
    page: Path  # RUN_DIR/inspect/index.html
    findings: dict[str, Any]  # what findings.json holds
    # Every inspected image (data-relative), lowest label quality first, for scripts and benchmarks.
    label_ranking: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def inspect_run(run_dir: str | Path, data: str | Path | None = None, *, folds: int = DEFAULT_FOLDS,
                solver: str = "auto", cache: bool = True, host: PluginHost | None = None,
                observer: Observer | None = None) -> InspectResult:
    """Inspect a finished run (see the package docstring); ``data``: the data folder's new place.
    ``solver``: "auto" solves the default linear head's folds, "keras" trains every head."""
    t_start = time.perf_counter()
    if solver not in SOLVERS:
        raise UsageError(f"Unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}. Pass --solver auto "
                         f"(the default) or --solver keras.")
    _require_extra()
    observer = observer or Observer()
    run = load_run(run_dir, data)
    if run.labels.get("task") == "multilabel":  # label issues here are single-label (cleanlab's filter)
        raise UsageError(
            f"{str(run_dir)!r} is a multi-label run (labels.json task 'multilabel'); clf inspect ranks label "
            f"issues of single-label runs only so far. Expected a run trained on one class a photo; for a "
            f"multi-label run, read metrics.json and pr_curves.png, or 'clf evaluate RUN --data labels.csv'.")
    _report_folder(run.run_dir)  # before the work, not after it
    host = host or get_host()  # plugins a run's config.toml names never load from it: pass host
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - t0, 3)
        return out

    parts = timed("load", load_model, run)

    feats = timed("features", run_features, run, parts, host, cache=cache, observer=observer)
    table = _Table.build(run, feats)

    observer.phase_start("folds")
    oof = timed("folds", _out_of_fold, run, host, table, folds, solver)
    observer.phase_end("folds", seconds=seconds["folds"], folds=oof.folds)

    findings, plan = timed("findings", _findings, run, parts, table, oof)
    observer.phase_start("page", total=len(plan.thumbs), unit="image")
    tmp = Path(run.run_dir) / f".{FOLDER}-tmp-{os.getpid()}"
    try:
        timed("page", _write_folder, tmp, run, parts, table, findings, plan, observer)
        seconds["total"] = round(time.perf_counter() - t_start, 3)
        findings["seconds"] = seconds
        out = _finish(tmp, findings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    observer.phase_end("page", seconds=seconds["page"], path=str(out / "index.html"))
    ranking = [table.relative[i] for i in plan.label_ranking]
    return InspectResult(Path(run.run_dir), out / "index.html", findings, ranking, seconds)


SOLVERS = ("auto", "keras")


def _out_of_fold(run: SavedRun, host: PluginHost, table: "_Table", folds: int, solver: str) -> OutOfFold:
    """Out-of-fold probabilities from heads like the run's: solved for the default linear
    head (unless ``solver`` is "keras"), trained with the run's settings for any other."""
    from clf.train.fit import SOLVABLE_HEADS

    config = run.config
    head = host.heads.get(config.head)
    # The run's own rule for which heads its solver solves (convex ones).
    if solver == "auto" and (head.plugin, head.name) in SOLVABLE_HEADS and not config.hidden_units:
        # The L2 strength the run's solver chose; None (the folds choose) if it trained its head.
        solved = (run.manifest.get("training") or {}).get("head") or {}
        l2 = float(solved["l2"]) if solved.get("solver") == "lbfgs" and solved.get("l2") else None
        return solved_out_of_fold(table.features, table.labels, run.class_names, class_weight=config.class_weight,
                                  seed=config.seed, folds=folds, l2=l2)
    return out_of_fold(table.features, table.labels, run.class_names, head=head, config=config,
                       folds=folds)


def _require_extra() -> None:
    import importlib.util

    missing = [name for name, module in (("cleanlab", "cleanlab"), ("scikit-learn", "sklearn"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise UsageError(f"clf inspect needs {' and '.join(missing)}, which are not installed; expected the "
                         f"'inspect' extra. Install it: pip install 'clf[inspect]' (from a checkout: "
                         f"pip install -e '.[inspect]').")


@dataclass
class _Table:
    """Every inspected image in one order: training files, then validation files."""

    features: np.ndarray
    labels: np.ndarray
    split: np.ndarray  # 0: train, 1: validation
    files: list[str]  # absolute paths
    relative: list[str]  # as the manifest names them

    @classmethod
    def build(cls, run: SavedRun, feats: dict[str, SplitFeatures]) -> "_Table":
        names = [s for s in ("train", "validation") if s in feats]
        return cls(np.concatenate([feats[s].features for s in names]),
                   np.concatenate([feats[s].labels for s in names]).astype(int),
                   np.concatenate([np.full(len(feats[s].labels), i) for i, s in enumerate(names)]),
                   [f for s in names for f in run.splits[s].files],
                   [f for s in names for f in run.relative[s]])


@dataclass
class _Plan:
    """Which images the page shows, so only those are decoded."""

    thumbs: list[int]  # image ids that get a thumbnail
    heat: dict[int, int]  # image id -> class whose heatmap is drawn
    label_ranking: np.ndarray


def _findings(run: SavedRun, parts: RunModel, table: _Table, oof: OutOfFold) -> tuple[dict[str, Any], _Plan]:
    names = run.class_names
    issues = label_issues(table.labels, oof.probabilities)
    val = np.flatnonzero(table.split == 1)
    val_probs = predict(parts.head, table.features[val]) if len(val) else np.zeros((0, len(names)), np.float32)
    val_labels = table.labels[val]
    errors = worst_errors(val_labels, val_probs)
    known = known_scores(run, parts, table.features, table.labels, table.split)
    far = (outliers(known.score, known.threshold) if known is not None
           else outliers(np.zeros(len(table.labels)), -np.inf))  # no out-of-fold score: no outliers
    pairs = near_duplicates(table.features, table.labels, table.split)

    flagged = [int(i) for i in issues.ranking if issues.flagged[i]]
    shown_issues = flagged[:SHOWN["label_issues"]]
    heat = {int(val[r]): int(errors.predicted[r]) for r in errors.indices[:SHOWN["worst_errors"]]}
    flagged_far = [int(i) for i in far.ranking if far.flagged[i]]
    shown_far = flagged_far[:SHOWN["outliers"]]
    shown_pairs = pairs[:SHOWN["near_duplicates"]]
    thumbs = sorted({*map(int, val), *shown_issues, *shown_far, *(i for p in shown_pairs for i in (p.a, p.b))})

    oof_accuracy = float(np.mean(oof.probabilities.argmax(1) == table.labels))
    calibration = reliability(val_labels, val_probs)
    findings: dict[str, Any] = {
        "format": FORMAT,
        "run": str(run.run_dir),
        "data": str(run.data_root),
        "class_names": names,
        "summary": {
            "images": len(table.labels),
            "train": int(np.sum(table.split == 0)), "validation": int(len(val)),
            "folds": oof.folds, "oof_accuracy": oof_accuracy, "oof_method": oof.method, "oof_l2": oof.l2,
            "validation_accuracy": float(np.mean(errors.predicted == val_labels)) if len(val) else None,
            "label_issues": len(flagged), "worst_errors": int(len(errors.indices)),
            "outliers": len(flagged_far), "near_duplicates": len(pairs),
            "leaks": sum(p.cross_split for p in pairs), "cross_class_duplicates": sum(p.cross_class for p in pairs),
            "ece": calibration["ece"],
        },
        # The score outliers come from: the run's known score (source "run") or, for a run without
        # one, the one --unknown auto would choose, calibrated on these features ("computed").
        "known_score": None if known is None else {
            "kind": known.kind, "source": known.source, "chosen": known.why, "threshold": known.threshold,
            "accept_known": known.accept_known,
            "training_accepted": float(np.mean(~far.flagged[table.split == 0])),
            "validation_accepted": float(np.mean(~far.flagged[val])) if len(val) else None,
        },
        # Every image's label quality (low: label looks wrong) and raw known score (low: unlike the
        # training images; out of fold for training images; None without one), for scripts.
        "images": [{"file": table.relative[i], "split": ("train", "validation")[table.split[i]],
                    "label": names[table.labels[i]], "quality": float(issues.quality[i]),
                    "known_score": float(far.score[i]) if known is not None else None, "thumb": None, "heat": None}
                   for i in range(len(table.labels))],
        "validation": {
            "confusion_matrix": confusion_matrix(val_labels, errors.predicted, len(names)).tolist(),
            # Every validation image, highest loss first: the gallery the matrix filters.
            "predictions": [{"image": int(val[r]), "true": names[val_labels[r]],
                             "predicted": names[errors.predicted[r]],
                             "probability": float(val_probs[r, errors.predicted[r]]),
                             "loss": float(errors.loss[r])}
                            for r in np.argsort(-errors.loss, kind="stable")] if len(val) else [],
        },
        "label_issues": [{"image": i, "file": table.relative[i], "label": names[table.labels[i]],
                          "suggested": names[issues.suggested[i]], "quality": float(issues.quality[i]),
                          "p_label": float(oof.probabilities[i, table.labels[i]]),
                          "p_suggested": float(oof.probabilities[i, issues.suggested[i]])} for i in flagged],
        "worst_errors": [{"image": int(val[r]), "file": table.relative[val[r]], "true": names[val_labels[r]],
                          "predicted": names[errors.predicted[r]],
                          "probability": float(val_probs[r, errors.predicted[r]]), "loss": float(errors.loss[r])}
                         for r in errors.indices],
        "heatmaps": {"method": None, "reason": None},
        "outliers": [{"image": i, "file": table.relative[i], "label": names[table.labels[i]],
                      "split": ("train", "validation")[table.split[i]], "score": float(far.score[i])}
                     for i in flagged_far],
        "near_duplicates": [{"a": p.a, "b": p.b, "files": [table.relative[p.a], table.relative[p.b]],
                             "similarity": p.similarity, "cross_split": p.cross_split,
                             "cross_class": p.cross_class} for p in pairs],
        "calibration": calibration,
        "shown": {"label_issues": len(shown_issues), "worst_errors": len(heat),
                  "outliers": len(shown_far), "near_duplicates": len(shown_pairs)},
    }
    return findings, _Plan(thumbs, heat, issues.ranking)


def _write_folder(tmp: Path, run: SavedRun, parts: RunModel, table: _Table, findings: dict[str, Any], plan: _Plan,
                  observer: Observer) -> None:
    """Thumbnails and heatmaps into ``tmp``, a fresh folder beside the report's place."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    maker = Heatmaps(parts)
    # Heatmap images at the model's input size (the map lies over exactly what it saw); the
    # rest straight at thumbnail size, which is cheaper.
    heat_ids = list(plan.heat) if maker.method else []
    at_input_size = {heat_ids[k]: image for k, image in decoded([table.files[i] for i in heat_ids], run.image_size)}
    small_ids = [i for i in plan.thumbs if i not in at_input_size]
    small = ((small_ids[k], image) for k, image in
             decoded([table.files[i] for i in small_ids], thumbnail_size(run.image_size)))
    images = findings["images"]  # each entry's "thumb" and "heat" start as None
    for i, image in itertools.chain(at_input_size.items(), small):
        write_thumbnail(image, tmp / "thumbs" / f"{i}.jpg")
        images[i]["thumb"] = f"thumbs/{i}.jpg"
        observer.phase_advance("page", 1)
    if at_input_size:
        maps = maker.maps(np.stack(list(at_input_size.values())), [plan.heat[i] for i in at_input_size])
        for (i, image), m in zip(at_input_size.items(), maps):
            write_overlay(image, m, tmp / "heat" / f"{i}.jpg")
            images[i]["heat"] = f"heat/{i}.jpg"
    findings["heatmaps"] = {"method": maker.method, "reason": maker.reason,
                            "class": "predicted" if maker.method else None}


def _finish(tmp: Path, findings: dict[str, Any]) -> Path:
    """Write the page and findings.json, then move ``tmp``'s files into RUN_DIR/inspect,
    replacing or removing only report files (now and in the previous ``RECORD``)."""
    write_json(tmp / "findings.json", findings)
    write_text(tmp / "index.html", render(findings))
    # Images first, page last: whichever page is in place finds its images.
    order = {"findings.json": 1, "index.html": 2}
    written = sorted((p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()),
                     key=lambda name: (order.get(name, 0), name))
    write_json(tmp / RECORD, {"format": FORMAT, "files": written})
    final = _report_folder(tmp.parent)
    if not final.exists():
        os.replace(tmp, final)
        return final
    previous = _recorded_files(final)
    inside = final.resolve()
    for name in [*written, RECORD]:
        (final / name).parent.mkdir(parents=True, exist_ok=True)
        if not (final / name).parent.resolve().is_relative_to(inside):  # thumbs/ made a link
            raise UsageError(f"{str((final / name).parent)!r} leads outside {str(final)!r} (a link); expected a "
                             f"plain folder of the report. Remove the link and run clf inspect again.")
        os.replace(tmp / name, final / name)
    for name in sorted(set(previous) - set(written)):
        old = final / name
        if old.is_file() and not old.is_symlink() and old.parent.resolve().is_relative_to(inside):
            old.unlink()
    return final


RECORD = ".clf-inspect.json"  # the files the report wrote, so the next one replaces only those


def _report_folder(run_dir: Path) -> Path:
    """RUN_DIR/inspect, refused when it is anything but a plain folder (a link would put the
    report, and the removal of its old files, somewhere else)."""
    final = Path(run_dir) / FOLDER
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise UsageError(f"{str(final)!r} is not a folder (a file or a link); expected the folder 'clf inspect' "
                         f"writes its report in. Move it away and run clf inspect again.")
    return final


def _recorded_files(final: Path) -> list[str]:
    """The files the previous report listed, each a plain path inside the folder (a damaged or
    edited record names nothing to remove)."""
    try:
        names = json.loads((final / RECORD).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n and not n.startswith("/") and "\\" not in n
            and ".." not in n.split("/") and "\0" not in n]


# The page: one self-contained HTML file (styles, script and findings JSON inline, drawn by
# page.js) that loads nothing from the network; images are the files beside it.
def _asset(name: str) -> str:
    return resources.files("clf.inspect").joinpath(name).read_text(encoding="utf-8")


# "</script>", "<!--" and "<script" change how HTML parses a <script> element, and U+2028/2029
# end lines in older JavaScript; as \u escapes the JSON strings mean the same.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                 "\u2028": "\\u2028", "\u2029": "\\u2029"})


def render(findings: dict[str, Any]) -> str:
    """The page for ``findings``, whose JSON can sit inside its ``<script>`` element unchanged."""
    title = html.escape(f"clf inspect: {findings.get('run', '')}")
    page = _asset("page.html")
    for key, value in (("{{TITLE}}", title), ("{{CSS}}", _asset("page.css")), ("{{JS}}", _asset("page.js"))):
        page = page.replace(key, value)
    # The data last: it may contain the other markers.
    return page.replace("{{DATA}}", json.dumps(findings, default=str).translate(_SCRIPT_ESCAPES))
