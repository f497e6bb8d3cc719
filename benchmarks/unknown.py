"""Benchmark: does clf's unknown-photo score (``clf run --unknown``) reject photos of classes it
was not trained on, accept the share of known photos it promises, and reach the same decision
in every export? Issue 27's targets, measured on clf's own implementation.

Everything measured is what ``clf run`` built: one ``clf.run`` per training set and score
(``--unknown auto`` and each shipped score; the run's own solved head, its own out-of-fold
threshold, clf.train.unknown), then the run's saved model reopened (clf.inspect.saved_run)
and its ``known_score`` layer (clf.data.preprocessing.KnownScore) applied to pooled features
read back from clf's feature cache, the way ``clf inspect`` reads them: the raw score by
clf.train.unknown.raw_scores, the decision by the layer's output column and
clf.artifacts.labels.is_known. Nothing here computes a score of its own. (The comparison of
candidate scores that chose the default, kNN and Mahalanobis variants included, was measured
by a research version of this script: branch unknown-research, commit 9b7deb9; summarised in
docs/unknown.md.)

Settings:

- far: trained on hymenoptera, shown every flowers5 photo; trained on flowers5, shown every
  hymenoptera photo; both shown the drawn shapes of examples/make_sample_data.py;
- near: each flowers5 class in turn left out of training (a folder of links to the other four
  classes' folders, so the feature cache still hits) and shown afterwards;
- shapes: trained on the drawn shapes (a small set), shown hymenoptera and flowers5.

Known photos are the validation photos of the trained classes; unknowns are every photo
(train and val) of the unknown set. Reported per score: AUROC (known = positive) and
FPR@95TPR (the share of unknowns scoring above the 5th percentile of the known photos) on the
raw score; the share of known validation photos and of unknowns the run's threshold accepts.

Then issue 27's targets for the default score (``--unknown auto``):
(a) far AUROC >= 0.98 and FPR@95 <= 0.05 both ways; (b) near mean AUROC >= max-softmax's +
0.05; (c) known validation photos accepted within accept-known +- 2 points (hymenoptera,
flowers5); (d) the exported TFLite and ONNX models reach the same accept/reject decision as
``clf predict`` (the first exported artifact, the Keras .h5) on every validation photo and
every unknown photo: a real ``clf run --export h5,tflite,onnx`` per dataset, then each
artifact opened by clf.artifacts.predict.load_predictor and run by predict_files;
(e) warm ``clf run`` on hymenoptera with ``--unknown auto`` against ``--unknown off`` (same
feature cache, fresh processes, best of --repeats each): the difference (target <= 0.3 s),
and the unknown phase's own seconds as the run reports them.

    python benchmarks/unknown.py                         # everything (~15-25 min on 2 CPUs)
    python benchmarks/unknown.py --scores auto,max-softmax --near daisy --photos 40 --repeats 1
    python benchmarks/unknown.py --json runs/bench-unknown/results.json

Runs, links and shapes live in --out (fresh runs each time unless --reuse); features in clf's
feature cache (--cache-dir; cold, the first run extracts every photo once). Seconds depend on
the machine and its load (on a shared machine, rerun to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
HYMENOPTERA = SHARED / "datasets" / "hymenoptera"
FLOWERS = SHARED / "datasets" / "flowers5"
EXPORTS = ("h5", "tflite", "onnx")  # h5 first: the artifact clf predict opens in a run folder


# --- datasets --------------------------------------------------------------------------------

def shapes_folder(out: Path, per_class: tuple[int, int]) -> Path:
    """The drawn shapes of examples/make_sample_data.py (seeded: the same every time)."""
    sys.path.insert(0, str(ROOT / "examples"))
    from make_sample_data import make

    root = out / "shapes"
    if not root.is_dir():
        make(root, train=per_class[0], val=per_class[1])
    return root


def without_class(out: Path, root: Path, left_out: str) -> Path:
    """A dataset of ``root``'s classes but ``left_out``: links to its class folders, so the
    photos (and their cached features) are the same files."""
    folder = out / "near" / f"without-{left_out}"
    for split in ("train", "val"):
        for source in sorted(p for p in (root / split).iterdir() if p.is_dir() and p.name != left_out):
            link = folder / split / source.name
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(source.resolve(), target_is_directory=True)
    return folder


# --- runs and what they built ----------------------------------------------------------------

def clf_run(data: Path, run_dir: Path, args: argparse.Namespace, unknown: str) -> Path:
    """A ``clf.run`` with ``--unknown unknown`` (kept when --reuse finds it finished)."""
    import clf

    if not (args.reuse and (run_dir / "manifest.json").is_file()):
        clf.run(clf.RunConfig(backbone=args.backbone, weights=args.weights, data=str(data), output=str(run_dir),
                              cache_dir=args.cache_dir, accept_known=args.accept_known, unknown=unknown,
                              verify=False, force=True))
    return run_dir


@dataclass
class Opened:
    """A finished run reopened: its labels.json, its known-score layer, the run and its model parts."""

    labels: dict[str, Any]
    layer: Any  # clf.data.preprocessing.KnownScore
    run: Any  # clf.inspect.saved_run.SavedRun
    parts: Any  # clf.inspect.saved_run.RunModel


def open_run(run_dir: Path) -> Opened:
    from clf.inspect.saved_run import load_model, load_run

    run = load_run(run_dir)
    if not run.labels.get("unknown"):
        raise SystemExit(f"{run_dir} has no unknown-photo score (labels.json has no 'unknown'); see its manifest.")
    parts = load_model(run)
    return Opened(run.labels, parts.known, run, parts)


@dataclass
class Features:
    """Pooled features of a dataset's photos, from clf's feature cache (as clf inspect reads them)."""

    name: str
    class_names: list[str]
    train: np.ndarray
    train_labels: np.ndarray
    val: np.ndarray
    val_labels: np.ndarray

    @property
    def all(self) -> np.ndarray:
        return np.concatenate([self.train, self.val])

    @property
    def all_labels(self) -> np.ndarray:
        return np.concatenate([self.train_labels, self.val_labels])


def features_of(name: str, opened: Opened) -> Features:
    import clf
    from clf.inspect.saved_run import run_features

    found = run_features(opened.run, opened.parts, clf.get_host())
    tr, va = found["train"], found["validation"]
    return Features(name, opened.run.class_names, tr.features, tr.labels, va.features, va.labels)


def raw(opened: Opened, features: np.ndarray) -> np.ndarray:
    """The layer's raw score (higher: more like the training photos)."""
    from clf.train.unknown import raw_scores

    return raw_scores(opened.layer, features)


def accepted(opened: Opened, features: np.ndarray) -> np.ndarray:
    """Per row, whether the exported model's known-score column counts it as known."""
    import keras

    from clf.artifacts.labels import is_known

    column = keras.ops.convert_to_numpy(opened.layer(features))[:, 0]
    return np.array([is_known(opened.labels, float(s)) for s in column], bool)


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(known)), np.zeros(len(unknown))], np.r_[known, unknown]))


def fpr_at_95tpr(known: np.ndarray, unknown: np.ndarray) -> float:
    return float(np.mean(unknown >= np.quantile(known, 0.05)))


# --- settings --------------------------------------------------------------------------------

@dataclass
class Trained:
    """One training set, its known validation photos and the unknown sets shown to it."""

    name: str
    group: str  # far, near, shapes
    data: Path
    known: np.ndarray
    unknowns: dict[str, np.ndarray] = field(default_factory=dict)  # setting -> features
    groups: dict[str, str] = field(default_factory=dict)  # setting -> far, near, shapes


def settings(feats: dict[str, Features], roots: dict[str, Path], near: list[str], out: Path) -> list[Trained]:
    found = []
    for name, f in feats.items():
        t = Trained(name, "shapes" if name == "shapes" else "far", roots[name], f.val)
        for other in feats.values():
            if other is not f and not (name == "shapes" and other.name == "shapes"):
                setting = f"{name} vs {other.name}"
                t.unknowns[setting] = other.all
                t.groups[setting] = "shapes" if "shapes" in (name, other.name) else "far"
        found.append(t)
    flowers = feats.get("flowers5")
    for cname in near if flowers is not None else []:
        c = flowers.class_names.index(cname)
        setting = f"flowers5 - {cname}"
        found.append(Trained(setting, "near", without_class(out, roots["flowers5"], cname),
                             flowers.val[flowers.val_labels != c], {setting: flowers.all[flowers.all_labels == c]},
                             {setting: "near"}))
    return found


def measure(t: Trained, scores: list[str], out: Path, args: argparse.Namespace,
            first: dict[str, Opened]) -> tuple[dict[str, dict], dict[str, dict]]:
    """``({setting: {score: separation}}, {score: acceptance})`` for one training set; the
    ``auto`` score is reported as ``auto (<the score it chose>)``."""
    separation: dict[str, dict] = {s: {} for s in t.unknowns}
    acceptance: dict[str, dict] = {}
    for kind in scores:
        key = (t.name, kind)
        opened = first.pop(key) if key in first else open_run(
            clf_run(t.data, out / "runs" / f"{t.name}-{kind}".replace(" ", ""), args, kind))
        record = opened.labels["unknown"]
        label = f"auto ({record['score']})" if kind == "auto" else kind
        known = raw(opened, t.known)
        recorded = record.get("validation_accepted")
        acceptance[label] = {"val_accepted": float(np.mean(accepted(opened, t.known))),
                             "recorded_val_accepted": recorded,
                             "training_accepted": record["training_accepted"], "params": record["params"],
                             "score_threshold": record["score_threshold"]}
        if recorded is not None and abs(acceptance[label]["val_accepted"] - recorded) * len(t.known) > 1.5:
            print(f"  note: {t.name} {label}: the exported column accepts {acceptance[label]['val_accepted']:.3f} of "
                  f"the validation photos, the run recorded {recorded:.3f}", flush=True)
        for s, images in t.unknowns.items():
            unknown = raw(opened, images)
            separation[s][label] = {"auroc": auroc(known, unknown), "fpr95": fpr_at_95tpr(known, unknown),
                                    "unknown_accepted": float(np.mean(accepted(opened, images)))}
    return separation, acceptance


# --- (d) every export decides alike -----------------------------------------------------------

def decisions(predictor: Any, photos: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """``(known?, known score)`` per photo through ``predictor`` (NaN: the photo did not decode)."""
    from clf.artifacts.predict import predict_files

    known, scores = [], []
    for p in predict_files(predictor, photos):
        known.append(p.error is None and not p.unknown)
        scores.append(np.nan if p.error is not None or p.known_score is None else p.known_score)
    return np.array(known, bool), np.array(scores, float)


def spread(files: list[Path], count: int) -> list[Path]:
    """``count`` files spread over the sorted list (0: all)."""
    if not count or count >= len(files):
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]


def export_agreement(name: str, data: Path, unknowns: dict[str, Path], out: Path,
                     args: argparse.Namespace) -> dict[str, Any]:
    """A real ``clf run --export h5,tflite,onnx`` on ``data``; every validation photo and every
    unknown photo through each artifact: decisions that differ from clf predict's."""
    from clf.artifacts.predict import load_predictor
    from clf.infer.decode import collect_images

    run_dir = out / "export" / name
    if not (args.reuse and (run_dir / "manifest.json").is_file()):
        cli(["run", "--data", str(data), "--export", ",".join(EXPORTS), "--output", str(run_dir), "--force",
             "--accept-known", str(args.accept_known)], args)
    photos = {f"{name} val": spread(collect_images(data / "val"), args.photos)}
    photos.update({f"{u} (unknown)": spread(collect_images(root), args.photos) for u, root in unknowns.items()})
    files = [f for group in photos.values() for f in group]
    group_of = np.array([g for g, group in photos.items() for _ in group])
    found: dict[str, Any] = {"photos": {g: len(f) for g, f in photos.items()}, "formats": {}}
    reference, ref_scores = decisions(load_predictor(run_dir), files)
    found["accepted"] = {g: float(np.mean(reference[group_of == g])) for g in photos}
    for fmt in EXPORTS[1:]:
        t0 = time.perf_counter()
        known, scores = decisions(load_predictor(run_dir, fmt=fmt), files)
        differ = np.flatnonzero(known != reference)
        found["formats"][fmt] = {"disagreements": int(len(differ)), "photos": len(files),
                                 "max_known_score_diff": float(np.nanmax(np.abs(scores - ref_scores))),
                                 "differing": [str(files[i]) for i in differ[:10]],
                                 "seconds": time.perf_counter() - t0}
    return found


# --- (e) what the score costs a warm clf run ---------------------------------------------------

def cli(argv: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """``clf <argv>`` in a fresh process with this benchmark's backbone, weights and cache; its
    jsonl events."""
    cmd = [sys.executable, "-m", "clf.cli", *argv, "--backbone", args.backbone, "--weights", args.weights,
           "--log-format", "jsonl", *(["--cache-dir", args.cache_dir] if args.cache_dir else [])]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    events = []
    for line in done.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def phase_seconds(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds from each phase's start event to its end event, as the run reported them."""
    started: dict[str, float] = {}
    spans: dict[str, float] = {}
    for e in events:
        if e.get("event") == "phase_start":
            started[e["phase"]] = e["time"]
        elif e.get("event") == "phase_end" and e.get("phase") in started:
            spans[e["phase"]] = e["time"] - started.pop(e["phase"])
    return spans


def run_overhead(data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Best-of-``repeats`` wall seconds of a warm ``clf run`` with ``--unknown auto`` and ``off``
    (alternating, same cache; the first of each is a warm-up), and each phase's seconds in the
    best run of each (where the difference goes)."""
    walls: dict[str, list[float]] = {"auto": [], "off": []}
    phases: dict[str, dict[str, float]] = {}
    for i in range(args.repeats + 1):
        for mode in ("auto", "off"):
            t0 = time.perf_counter()
            events = cli(["run", "--data", str(data), "--output", str(out / "timing" / mode), "--force",
                          "--unknown", mode], args)
            wall = time.perf_counter() - t0
            if i and (not walls[mode] or wall < min(walls[mode])):
                phases[mode] = phase_seconds(events)
            if i:
                walls[mode].append(wall)
    best = {m: min(w) for m, w in walls.items()}
    return {"auto": best["auto"], "off": best["off"], "difference": best["auto"] - best["off"],
            "ratio": best["auto"] / best["off"], "unknown_phase": phases["auto"].get("unknown"),
            "phases": phases, "walls": walls}


# --- report ----------------------------------------------------------------------------------

def table(title: str, results: dict, labels: list[str], key: str, columns: list[str], mean_of: list[str]) -> None:
    print(f"\n{title}")
    head = [*columns, *(["near mean"] if mean_of else [])]
    print("| score | " + " | ".join(head) + " |")
    print("| --- " * (len(head) + 1) + "|")
    for n in labels:
        cells = [format(results[c][n][key], ".3f") for c in columns]
        if mean_of:
            cells.append(format(np.mean([results[c][n][key] for c in mean_of]), ".3f"))
        print(f"| {n} | " + " | ".join(cells) + " |")


def targets(results: dict, groups: dict, acceptance: dict, exports: dict, overhead: dict, default: str,
            accept: float) -> list[tuple[str, str, str]]:
    """``(target, measured, met)`` rows of issue 27's targets for the default score."""
    rows = []
    far = [c for c in results if groups[c] == "far"]
    if far:
        au = {c: results[c][default]["auroc"] for c in far}
        fp = {c: results[c][default]["fpr95"] for c in far}
        rows.append(("(a) far AUROC >= 0.98 and FPR@95 <= 0.05, both ways",
                     "; ".join(f"{c}: {au[c]:.3f}, {fp[c]:.3f}" for c in far),
                     "yes" if min(au.values()) >= 0.98 and max(fp.values()) <= 0.05 else "NO"))
    near = [c for c in results if groups[c] == "near"]
    if near and "max-softmax" in results[near[0]]:
        ours = np.mean([results[c][default]["auroc"] for c in near])
        base = np.mean([results[c]["max-softmax"]["auroc"] for c in near])
        rows.append(("(b) near mean AUROC >= max-softmax's + 0.05", f"{ours:.3f} vs {base:.3f} + 0.05 "
                     f"({len(near)} held-out classes)", "yes" if ours >= base + 0.05 else "NO"))
    shown = {t: acceptance[t][default]["val_accepted"] for t in ("hymenoptera", "flowers5") if t in acceptance}
    if shown:
        rows.append((f"(c) known validation photos accepted {accept:.0%} +- 2 points",
                     ", ".join(f"{t} {a:.3f}" for t, a in shown.items()),
                     "yes" if all(abs(a - accept) <= 0.02 + 1e-9 for a in shown.values()) else "NO"))
    if exports:
        cells = [f"{d} {fmt}: {r['disagreements']} of {r['photos']}" for d, e in exports.items()
                 for fmt, r in e["formats"].items()]
        rows.append(("(d) TFLite and ONNX decide as clf predict (h5) on every photo", "; ".join(cells),
                     "yes" if all(r["disagreements"] == 0 for e in exports.values() for r in e["formats"].values())
                     else "NO"))
    if overhead:
        phase = overhead["unknown_phase"]
        # The phase's own seconds bound the cost from below, whatever the load does to whole runs.
        rows.append(("(e) warm clf run, --unknown auto minus off, <= 0.3 s (hymenoptera; the unknown phase "
                     "alone too)", f"{overhead['auto']:.2f} s - {overhead['off']:.2f} s = "
                     f"{overhead['difference']:+.2f} s (ratio {overhead['ratio']:.3f}); unknown phase "
                     f"{'-' if phase is None else format(phase, '.2f')} s",
                     "yes" if overhead["difference"] <= 0.3 and (phase is None or phase <= 0.3) else "NO"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hymenoptera", default=str(HYMENOPTERA), help="ants/bees folder (train/ val/)")
    p.add_argument("--flowers", default=str(FLOWERS), help="flowers5 folder (train/ val/)")
    p.add_argument("--shapes", type=int, nargs=2, default=(40, 20), metavar=("TRAIN", "VAL"),
                   help="drawn shapes per class and split (examples/make_sample_data.py); 0 0: none")
    p.add_argument("--scores", default="auto,maha,energy,max-softmax",
                   help="comma-separated --unknown values to measure (auto first: the targets are its)")
    p.add_argument("--near", default="all", help="flowers5 classes to leave out in turn: all, none, or names")
    p.add_argument("--accept-known", type=float, default=0.95, help="clf run --accept-known")
    p.add_argument("--photos", type=int, default=0,
                   help="(d): photos per group (spread over it) through each export; 0: every photo")
    p.add_argument("--repeats", type=int, default=3, help="(e): timed clf runs per setting (best kept); 0: skip")
    p.add_argument("--no-exports", dest="exports", action="store_false", help="skip (d)")
    p.add_argument("--backbone", default="mobilenet_v2_035")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else "imagenet")
    p.add_argument("--cache-dir", default=None, help="clf's feature cache (default: clf's own)")
    p.add_argument("--out", default="runs/bench-unknown", help="runs, links and shapes live here")
    p.add_argument("--reuse", action="store_true", help="keep finished runs found in --out (else rerun)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    from clf.config import UNKNOWN_SCORES

    scores = [s.strip() for s in args.scores.split(",") if s.strip()]
    if bad := [s for s in scores if s not in ("auto", *UNKNOWN_SCORES)]:
        p.error(f"--scores {', '.join(bad)}: expected some of auto, {', '.join(UNKNOWN_SCORES)}")
    out = Path(args.out).resolve()  # runs record their data paths as given
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    print(f"clf unknown-photo benchmark: backbone {args.backbone}, weights {Path(args.weights).name}, "
          f"accept-known {args.accept_known}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
          flush=True)

    roots = {"hymenoptera": Path(args.hymenoptera), "flowers5": Path(args.flowers)}
    if args.shapes[0] > 0:
        roots["shapes"] = shapes_folder(out, tuple(args.shapes))
    for name in [n for n, r in roots.items() if not r.is_dir()]:
        print(f"skipped {roots.pop(name)}: not there")
    first: dict[tuple[str, str], Opened] = {}  # each dataset's first run also gives its features
    feats: dict[str, Features] = {}
    for name, root in roots.items():
        t0 = time.perf_counter()
        opened = first[(name, scores[0])] = open_run(clf_run(root, out / "runs" / f"{name}-{scores[0]}", args,
                                                             scores[0]))
        f = feats[name] = features_of(name, opened)
        print(f"  {name}: {len(f.class_names)} classes, {len(f.train)} train / {len(f.val)} val photos; "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    near = [] if args.near == "none" or "flowers5" not in feats else (
        feats["flowers5"].class_names if args.near == "all" else args.near.split(","))

    results: dict[str, dict] = {}
    groups: dict[str, str] = {}
    acceptance: dict[str, dict] = {}
    trained_group: dict[str, str] = {}
    for t in settings(feats, roots, near, out):
        t0 = time.perf_counter()
        separation, acceptance[t.name] = measure(t, scores, out, args, first)
        trained_group[t.name] = t.group
        results.update(separation)
        groups.update(t.groups)
        print(f"  trained on {t.name}: {len(t.known)} known val, unknowns "
              + ", ".join(f"{s} {len(u)}" for s, u in t.unknowns.items())
              + f"; {len(scores)} runs, {time.perf_counter() - t0:.1f}s", flush=True)
    labels = list(next(iter(acceptance.values())))
    default = labels[0]
    columns = list(results)
    near_cols = [c for c in columns if groups[c] == "near"]
    table("AUROC on the raw score (known validation photos vs unknowns; 1 = perfect, 0.5 = chance)",
          results, labels, "auroc", columns, near_cols)
    table("FPR@95TPR (share of unknowns above the known photos' 5th percentile; lower is better)",
          results, labels, "fpr95", columns, near_cols)
    table("Unknowns accepted at the run's threshold (lower is better)", results, labels, "unknown_accepted",
          columns, near_cols)
    tnames = list(acceptance)
    table(f"Known validation photos accepted at the run's threshold (target {args.accept_known:.0%} +- 2 points)",
          acceptance, labels, "val_accepted", tnames, [n for n in tnames if trained_group[n] == "near"])

    exports: dict[str, Any] = {}
    if args.exports:
        pairs = [("hymenoptera", "flowers5"), ("flowers5", "hymenoptera")]
        for name, other in pairs:
            if name in roots:
                t0 = time.perf_counter()
                unknown_roots = {u: roots[u] for u in (other, "shapes") if u in roots}
                exports[name] = e = export_agreement(name, roots[name], unknown_roots, out, args)
                print(f"  exports of {name}: " + "; ".join(f"{fmt} {r['disagreements']} of {r['photos']} decisions "
                                                           f"differ (known score max |diff| "
                                                           f"{r['max_known_score_diff']:.1e})"
                                                           for fmt, r in e["formats"].items())
                      + "; clf predict accepts " + ", ".join(f"{g} {a:.3f}" for g, a in e["accepted"].items())
                      + f"; {time.perf_counter() - t0:.1f}s", flush=True)
    overhead: dict[str, Any] = {}
    if args.repeats and "hymenoptera" in roots:
        overhead = run_overhead(roots["hymenoptera"], out, args)
        auto, off = overhead["phases"]["auto"], overhead["phases"]["off"]
        print(f"  warm clf run on hymenoptera, best of {args.repeats}: --unknown auto {overhead['auto']:.2f} s, "
              f"off {overhead['off']:.2f} s; phase seconds (auto / off): "
              + ", ".join(f"{ph} {auto[ph]:.2f} / {off[ph]:.2f}" if ph in off else f"{ph} {auto[ph]:.2f} / -"
                          for ph in auto), flush=True)

    print(f"\nIssue 27 targets, default score {default}")
    print("| target | measured | met |")
    print("| --- | --- | --- |")
    for row in targets(results, groups, acceptance, exports, overhead, default, args.accept_known):
        print("| " + " | ".join(row) + " |")
    print(f"\ntotal {time.perf_counter() - t_all:.0f}s; load average at end {os.getloadavg()[0]:.2f} "
          f"(other processes share these CPUs: timings include that)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "results": results, "settings": groups, "acceptance": acceptance, "exports": exports,
            "overhead": overhead, "accept_known": args.accept_known, "scores": scores}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
