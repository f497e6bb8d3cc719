"""A finished run at a glance: the one-line ``repr`` of a ``RunResult`` (a dataclass's
default would dump every field) and its notebook view."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from clf.report.runrecord import UNKNOWN_PLOT

SHOWN_CLASSES = 6  # the repr names this many classes, then counts the rest


def _classes(names: list[str]) -> str:
    shown = ", ".join(map(repr, names[:SHOWN_CLASSES]))
    return f"[{shown}, ... ({len(names)} in all)]" if len(names) > SHOWN_CLASSES else f"[{shown}]"


# result: a clf.train.engine.RunResult (report imports no train, so Any here)
def _files(result: Any) -> list[str]:
    return [Path(f).name for files in (result.artifacts or {}).values() for f in files]


def _unknown(result: Any) -> dict[str, Any] | None:
    """The run's known score (labels.json's "unknown"), None when it has none."""
    return (getattr(result, "manifest", None) or {}).get("unknown") or None


def unknown_line(record: dict[str, Any]) -> str:
    """One line on the run's known score: which, what it accepts of the training images (out of
    fold, as chosen) and of the validation images."""
    validation = (f", {record['validation_accepted']:.1%} of the validation images"
                  if record.get("validation_accepted") is not None else "")
    return (f"{record['score']} score, threshold accepting {record['accept_known']:.0%} of the training images "
            f"out of fold; accepts {record['training_accepted']:.1%} of the training images{validation}")


def text(result: Any) -> str:
    """``RunResult(run_dir='runs/...', backbone='vgg16', classes=[...], validation_accuracy=0.9, ...)``."""
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()
                        if k.endswith(("accuracy", "_map", "macro_f1")) or k == "validation_known_accepted")
    known = _unknown(result)
    unknown = f"unknown={known['score'] if known else 'off'!r}"
    parts = [f"run_dir={str(result.run_dir)!r}", f"backbone={result.config.backbone!r}",
             f"classes={_classes(result.class_names)}", *([metrics] if metrics else []), unknown,
             f"artifacts={_files(result)!r}"]
    return f"RunResult({', '.join(parts)})"


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    def cell(tag: str, value: Any, i: int) -> str:
        align = ' style="text-align:right"' if i >= numeric_from else ""
        return f"<{tag}{align}>{escape(str(value))}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", v, i) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html(result: Any) -> str:
    """The notebook view: what ran, the metrics per split, per class, and the confusion matrix."""
    config = result.config
    files = ", ".join(_files(result)) or "none"
    size = f" at {config.image_size}x{config.image_size}" if config.image_size else ""
    parts = [f"<p><b>clf run</b> <code>{escape(str(result.run_dir))}</code>: backbone "
             f"<code>{escape(config.backbone)}</code>{size}, {len(result.class_names)} classes; "
             f"artifacts: {escape(files)}</p>"]
    known = _unknown(result)
    parts.append(f"<p>unknown photos: {escape(unknown_line(known))}</p>{_image(result, UNKNOWN_PLOT, 'known score')}"
                 if known else "<p>unknown photos: no known score (every photo gets one of the classes)</p>")
    reports = result.evaluation or {}
    if reports:
        # multi-label reports (clf.report.multilabel) have mAP where single-label ones have accuracy
        first = "mAP" if "map" in next(iter(reports.values())) else "accuracy"
        rows = [[split, r["images"], f"{r.get('map', r.get('accuracy', 0.0)):.4f}",
                 f"{r['loss']:.4f}" if "loss" in r else "", f"{r['macro_f1']:.4f}"] for split, r in reports.items()]
        parts.append(_table(["split", "images", first, "loss", "macro F1"], rows))
        split = "test" if "test" in reports else next(iter(reports))
        report = reports[split]
        per_class = [[name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]]
                     for name, s in report["per_class"].items()]
        parts.append(f"<p>per class ({escape(split)})</p>"
                     + _table(["class", "precision", "recall", "f1", "support"], per_class))
        parts.append(_confusion(result, report, split))
    folds = getattr(result, "cross_validation", None)
    if folds:
        parts.append(_folds(folds))
    parts.append(_deployment(result))
    return '<div class="clf-run-result">' + "".join(parts) + "</div>"


def _deployment(result: Any) -> str:
    """deployment.json as a table: each artifact against the Keras model (nothing without one)."""
    from clf.artifacts.deployment import read_table

    rows = read_table(Path(result.run_dir))
    if not rows:
        return ""
    cells = [[r["file"], r["runtime"], r["quantization"] + (f" ({r['variant']})" if r.get("variant") else ""),
              r["images"], f"{r['accuracy']:.4f}", f"{100 * r['difference']:+.1f}", f"{r['p_value']:.3g}",
              f"{r['top1_agreement']:.4f}", f"{r['max_abs_diff']:.2e}", f"{r['size_bytes'] / 2**20:.2f}",
              "" if r.get("latency_ms") is None else f"{r['latency_ms']:.1f}",
              "" if r.get("throughput") is None else f"{r['throughput']:.0f}"] for r in rows]
    return "<p>deployment (held-out images through each artifact's own runtime)</p>" + _table(
        ["artifact", "runtime", "quantization", "images", "accuracy", "vs Keras (pt)", "McNemar p",
         "top-1 agreement", "max |diff|", "MiB", "batch-1 ms", "batch-32 img/s"], cells, numeric_from=3)


def _confusion(result: Any, report: dict[str, Any], split: str) -> str:
    """The run's confusion_matrix.png inline (it shows the primary split), else a table."""
    image = _image(result, "confusion_matrix.png", "confusion matrix")
    if image:
        return f'<p>confusion matrix ({escape(split)})</p>{image}'
    names = report["class_names"]
    rows = [[name, *row] for name, row in zip(names, report["confusion_matrix"])]
    return f"<p>confusion matrix ({escape(split)})</p>" + _table(["true \\ predicted", *names], rows)


def _image(result: Any, name: str, alt: str) -> str:
    """The run folder's PNG ``name`` as an inline ``<img>``; "" when it has none."""
    image = Path(result.run_dir) / name
    if not image.is_file():
        return ""
    data = base64.b64encode(image.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" style="max-width:480px" src="data:image/png;base64,{data}"/>'


def _folds(report: dict[str, Any]) -> str:
    """The --folds scores: mean and 95% t interval over the folds, overall and per class."""
    def row(name: str, score: dict[str, Any]) -> list[Any]:
        return [name, f"{score['mean']:.4f}", f"[{score['low']:.4f}, {score['high']:.4f}]"]

    rows = [row("accuracy", report["accuracy"]), row("macro F1", report["macro_f1"]),
            *(row(f"recall: {name}", score) for name, score in report["per_class_recall"].items())]
    return (f"<p>{report['folds']}-fold cross-validation on {report['images']} images "
            f"({escape(report['splits'])}): mean and 95% t interval over the folds</p>"
            + _table(["score", "mean", "95% interval"], rows))
