"""``clf compare RUN_A RUN_B [RUN ...]``: is B really better than A, or is it noise? Each
run's ``predictions.json`` (written by ``clf run``) pairs the runs image by image: accuracy
difference with a paired bootstrap interval, McNemar's test on the photos only one run gets
right (clf.report.confidence), a per-class table, and a page with thumbnails of those photos.
Reads JSON and images only: TensorFlow is never imported.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from clf.data.manifest import read_manifest
from clf.errors import DataError, UsageError
from clf.files import write_json, write_text
from clf.report.confidence import LEVEL, mcnemar, paired_bootstrap
from clf.report.runrecord import PREDICTIONS, PREDICTIONS_FORMAT

FORMAT = "clf-compare/1"
SHOWN = 100  # photos per side on the page (comparison.json lists every one)
SHOWN_IN_ERROR = 5


@dataclass
class RunPredictions:
    run_dir: Path
    split: str
    class_names: list[str]
    images: list[dict[str, Any]]  # predictions.json's rows of the split, in the run's order
    data_root: Path

    def by_file(self) -> dict[str, dict[str, Any]]:
        return {row["file"]: row for row in self.images}


@dataclass
class Comparison:
    record: dict[str, Any]  # what comparison.json holds (and --json prints)
    output: Path | None = None  # the folder with index.html and thumbs/
    notes: list[str] = field(default_factory=list)


def read_predictions(run_dir: str | Path, split: str | None = None) -> RunPredictions:
    """A run's per-image predictions of ``split`` (default: the split its metrics.json reports on)."""
    run_dir = Path(run_dir)
    path = run_dir / PREDICTIONS
    if not run_dir.is_dir():
        raise UsageError(f"Run folder {str(run_dir)!r} does not exist; expected a folder 'clf run' wrote. Check the path.")
    if not path.is_file():
        raise UsageError(f"{str(run_dir)!r} has no {PREDICTIONS}; expected a run folder written by clf run "
                         f"(runs record each evaluated image's prediction since clf compare exists). Train "
                         f"the run again to compare it.")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{str(path)!r} is not readable JSON ({exc}); expected the file clf run wrote. "
                        f"Train the run again.") from None
    if not isinstance(record, dict) or record.get("format") != PREDICTIONS_FORMAT:
        raise DataError(f"{str(path)!r} has format {record.get('format') if isinstance(record, dict) else None!r}; "
                        f"expected {PREDICTIONS_FORMAT!r}. Train the run again with this clf.")
    splits = record.get("splits") or {}
    if split is None:
        metrics = _read_json(run_dir / "metrics.json")
        split = metrics.get("evaluated_on") if metrics.get("evaluated_on") in splits else next(iter(splits), None)
    if split not in splits:
        raise UsageError(f"{str(run_dir)!r} recorded predictions of {', '.join(splits) or 'no split'}, not "
                         f"{split!r}; expected a split every compared run evaluated. Pass --split with one of them.")
    root = Path(read_manifest(run_dir, required=False).get("data", {}).get("source", "."))
    return RunPredictions(run_dir, str(split), list(record["class_names"]), list(splits[split]), root)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def check_same_images(a: RunPredictions, b: RunPredictions) -> None:
    """The two runs evaluated the same photos (same relative paths, labels and bytes); else a
    DataError naming the first differences and how to get comparable runs."""
    if a.class_names != b.class_names:
        raise DataError(f"{str(a.run_dir)!r} has classes {a.class_names} and {str(b.run_dir)!r} has "
                        f"{b.class_names}; expected the same classes in the same order. Compare runs trained "
                        f"on the same data.")
    rows_a, rows_b = a.by_file(), b.by_file()
    only_a = sorted(set(rows_a) - set(rows_b))
    only_b = sorted(set(rows_b) - set(rows_a))
    changed = sorted(f for f in set(rows_a) & set(rows_b)
                     if (rows_a[f]["label"], rows_a[f].get("sha256")) != (rows_b[f]["label"], rows_b[f].get("sha256")))
    if not (only_a or only_b or changed):
        return
    parts = []
    for what, files in ((f"only in {a.run_dir.name}", only_a), (f"only in {b.run_dir.name}", only_b),
                        ("with other bytes or label", changed)):
        if files:
            shown = ", ".join(files[:SHOWN_IN_ERROR]) + (" ..." if len(files) > SHOWN_IN_ERROR else "")
            parts.append(f"{len(files)} {what} ({shown})")
    raise DataError(
        f"Runs {str(a.run_dir)!r} and {str(b.run_dir)!r} were evaluated on different {a.split} images: "
        f"{'; '.join(parts)}. Expected the same images, so each photo can be paired. Train both on the same "
        f"--data with the same --seed and --validation-split (or a fixed val/ folder), then compare again."
    )


def compare_runs(run_dirs: list[str | Path], *, split: str | None = None, output: str | Path | None = None,
                 page: bool = True) -> Comparison:
    """The first run against each of the others, paired on the same images (see the module docstring)."""
    if len(run_dirs) < 2:
        raise UsageError(f"clf compare needs at least two run folders, got {len(run_dirs)}; expected "
                         f"clf compare RUN_A RUN_B [RUN ...].")
    runs = [read_predictions(d, split) for d in run_dirs]
    base = runs[0]
    for other in runs[1:]:
        if other.split != base.split:
            raise DataError(f"{str(base.run_dir)!r} reports on {base.split} and {str(other.run_dir)!r} on "
                            f"{other.split}; expected one split. Pass --split {base.split} (or another both have).")
        check_same_images(base, other)
    files = [row["file"] for row in base.images]
    names = base.class_names
    labels = np.array([names.index(row["label"]) for row in base.images], int)
    rows = [r.by_file() for r in runs]
    folder_names = [r.run_dir.name for r in runs]
    # Each run by its folder's name; by its path where two folders share a name.
    names_shown = [str(r.run_dir) if folder_names.count(r.run_dir.name) > 1 else r.run_dir.name for r in runs]
    right = [np.array([m[f]["predicted"] == m[f]["label"] for f in files], bool) for m in rows]
    record: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.now().isoformat(timespec="seconds"),
        "split": base.split,
        "images": len(files),
        "class_names": names,
        "runs": [{"run": str(r.run_dir), "name": shown, "accuracy": float(np.mean(ok)) if len(ok) else 0.0}
                 for r, shown, ok in zip(runs, names_shown, right)],
        "interval": f"{LEVEL:.0%} paired bootstrap percentile interval of the accuracy difference",
        "pairs": [],
        "per_class": [{"class": name, "images": int(np.sum(labels == c)),
                       "recall": [float(np.mean(ok[labels == c])) if np.any(labels == c) else 0.0 for ok in right]}
                      for c, name in enumerate(names)],
    }
    for shown, m, ok in zip(names_shown[1:], rows[1:], right[1:]):
        pair = {"a": names_shown[0], "b": shown, **paired_bootstrap(right[0], ok), **mcnemar(right[0], ok)}
        pair["right_only_in_a"] = [_row(rows[0], m, files[i]) for i in np.flatnonzero(right[0] & ~ok)]
        pair["right_only_in_b"] = [_row(rows[0], m, files[i]) for i in np.flatnonzero(ok & ~right[0])]
        record["pairs"].append(pair)
    result = Comparison(record)
    if page:
        result.output = write_page(record, base, Path(output) if output else default_output(base.run_dir), result.notes)
    return result


def _row(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], file: str) -> dict[str, Any]:
    ra, rb = a[file], b[file]
    return {"file": file, "label": ra["label"], "a": ra["predicted"], "a_probability": ra["probability"],
            "b": rb["predicted"], "b_probability": rb["probability"]}


def default_output(run_dir: Path) -> Path:
    """``<first run>/comparisons/<timestamp>``, never an existing folder."""
    base = run_dir / "comparisons" / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = base, 2
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def write_page(record: dict[str, Any], base: RunPredictions, out: Path, notes: list[str]) -> Path:
    """``out/index.html`` (self-contained but for thumbs/), ``out/comparison.json`` and the thumbnails."""
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"Output folder {str(out)!r} already exists and is not empty; expected a new or empty "
                         f"folder so no earlier comparison is overwritten. Pass another --output.")
    out.mkdir(parents=True, exist_ok=True)
    thumbs: dict[str, str] = {}
    wanted = {row["file"] for pair in record["pairs"] for side in ("right_only_in_a", "right_only_in_b")
              for row in pair[side][:SHOWN]}
    missing = 0
    for i, file in enumerate(sorted(wanted)):
        name = f"thumbs/{i}.jpg"
        if _thumbnail(base.data_root / file, out / name):
            thumbs[file] = name
        else:
            missing += 1
    if missing:
        notes.append(f"{missing} photo(s) could not be read under {str(base.data_root)!r} (moved data?); the page "
                     f"lists them without a thumbnail.")
    write_json(out / "comparison.json", record)
    write_text(out / "index.html", render(record, thumbs))
    return out


def _thumbnail(source: Path, dest: Path) -> bool:
    """A thumbnail of ``source`` as ``clf inspect`` writes them (clf.inspect.cam), decoded by Pillow."""
    from PIL import Image, ImageOps

    from clf.inspect.cam import SIDE, write_thumbnail

    try:
        with Image.open(source) as image:
            image.draft("RGB", (SIDE, SIDE))  # JPEG: decode at a reduced scale, much faster
            picture = ImageOps.exif_transpose(image).convert("RGB")
            picture.thumbnail((SIDE, SIDE))
            write_thumbnail(np.asarray(picture, np.float32), dest)
        return True
    except (OSError, ValueError):
        return False


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:.6em}.card{width:170px;font-size:.8em}.card img{max-width:160px;display:block}
.muted{color:#666}"""


def render(record: dict[str, Any], thumbs: dict[str, str]) -> str:
    """The page: runs, each pair's difference and test, per-class recall, the photos only one run gets right."""
    e = html.escape
    runs = "".join(f"<tr><td>{e(r['name'])}</td><td>{r['accuracy']:.4f}</td><td class=muted>{e(r['run'])}</td></tr>"
                   for r in record["runs"])
    parts = [f"<h1>clf compare: {record['images']} {e(record['split'])} images</h1>",
             f"<table><tr><th>run</th><th>accuracy</th><th>folder</th></tr>{runs}</table>"]
    for pair in record["pairs"]:
        parts.append(
            f"<h2>{e(pair['b'])} vs {e(pair['a'])}</h2><p>accuracy difference {pair['difference']:+.4f} "
            f"(95% paired bootstrap interval [{pair['low']:+.4f}, {pair['high']:+.4f}]); right only in "
            f"{e(pair['a'])}: {pair['right_only_a']}, only in {e(pair['b'])}: {pair['right_only_b']}; McNemar "
            f"p = {pair['p_value']:.3g} ({e(pair['method'])})</p>")
        for side, who in (("right_only_in_a", pair["a"]), ("right_only_in_b", pair["b"])):
            rows = pair[side]
            cards = "".join(
                f"<div class=card>{_img(thumbs.get(r['file']), r['file'])}<b>{e(r['file'])}</b><br>label "
                f"{e(r['label'])}<br>{e(pair['a'])}: {e(r['a'])} ({r['a_probability']:.2f})<br>{e(pair['b'])}: "
                f"{e(r['b'])} ({r['b_probability']:.2f})</div>" for r in rows[:SHOWN])
            more = f"<p class=muted>and {len(rows) - SHOWN} more in comparison.json</p>" if len(rows) > SHOWN else ""
            parts.append(f"<h3>right only in {e(who)} ({len(rows)})</h3><div class=grid>{cards}</div>{more}")
    header = "".join(f"<th>{e(r['name'])}</th>" for r in record["runs"])
    rows = "".join(f"<tr><td>{e(c['class'])}</td><td>{c['images']}</td>"
                   + "".join(f"<td>{v:.3f}</td>" for v in c["recall"]) + "</tr>" for c in record["per_class"])
    parts.append(f"<h2>recall per class</h2><table><tr><th>class</th><th>images</th>{header}</tr>{rows}</table>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>clf compare</title><style>{_CSS}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")


def _img(src: str | None, alt: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">' if src else "<span class=muted>(no image)</span>"
