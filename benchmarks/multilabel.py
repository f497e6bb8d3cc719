"""Benchmark: the default multi-label head (one-vs-rest logistic regression solved on the cached
features, per-class thresholds chosen out of fold) against a Keras-fit binary cross-entropy head
(--solver keras, 20 epochs, thresholds 0.5), on the same cached features, in the same invocation.

Data: mosaic sets generated from the shared photos (``make_mosaics``) into clf's cache folder,
never the project: each single photo (labelled with its class) plus as many mosaics, two photos
of different classes each resized to 224x112 and put side by side, labelled with both; the
dataset's train/ and val/ photos stay in their split (the CSV's split column). Each seed draws
its own mosaics and runs with that seed.

Targets (docs/multilabel.md): the default head's validation mAP and macro F1 >= the Keras head's
at every seed; hymenoptera mAP >= 0.98 and macro F1 >= 0.95; flowers5 mAP >= 0.72 and macro F1
>= 0.70. Then the warm-run cost: on the single photos alone, a warm ``--task multilabel`` run
against a warm ``--task single`` run of the same labels file (target: <= +1 s), medians of
``--repeats`` alternated runs.

Every run: ``--backbone mobilenet_v2_035`` with the shared ImageNet weights at 224 px, export h5,
other settings clf's defaults. Usage (from the repository root):
    python benchmarks/multilabel.py                         # hymenoptera and flowers5, seeds 0 1 2
    python benchmarks/multilabel.py --data hymenoptera --seeds 0 --repeats 1
    python benchmarks/multilabel.py --tta flip              # both heads on flip-averaged features
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
DATASETS = {"hymenoptera": SHARED / "datasets" / "hymenoptera", "flowers5": SHARED / "datasets" / "flowers5"}
TARGETS = {"hymenoptera": (0.98, 0.95), "flowers5": (0.72, 0.70)}  # (mAP, macro F1)
WARM_TARGET = 1.0  # seconds a warm multi-label run may add
SPLITS = {"train": "train", "val": "val"}
SUFFIXES = {".jpg", ".jpeg", ".png"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--weights", default=str(WEIGHTS))
    p.add_argument("--backbone", default="mobilenet_v2_035")
    p.add_argument("--epochs", type=int, default=20, help="the Keras head's epochs")
    p.add_argument("--repeats", type=int, default=3, help="alternated warm runs per task")
    p.add_argument("--tta", default="none", choices=["none", "flip"],
                   help="both heads' --tta (flip: features averaged with the mirror image's; not the default)")
    p.add_argument("--cache", default=None, help="where the mosaic sets go (default: clf's cache folder)")
    return p.parse_args(argv)


def class_photos(root: Path, split: str) -> dict[str, list[Path]]:
    folder = root / split
    return {c.name: sorted(p for p in c.iterdir() if p.suffix.lower() in SUFFIXES)
            for c in sorted(folder.iterdir()) if c.is_dir()}


def make_mosaics(root: Path, dest: Path, seed: int, size: int = 224) -> Path:
    """Write a mosaic set of dataset ``root`` (train/ and val/ class folders) into ``dest`` and
    return its labels.csv: every single photo (its own path, its class) and, per split, as many
    mosaics (two photos of different classes, each resized to ``size`` x ``size/2`` (height x
    width), side by side, labelled with both). Rebuilt only when missing."""
    from PIL import Image

    labels = dest / "labels.csv"
    if labels.is_file():
        return labels
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    rows = []
    for split in SPLITS:
        per_class = class_photos(root, split)
        singles = [(p, name) for name, photos in per_class.items() for p in photos]
        rows += [(str(p), name, split) for p, name in singles]
        names = sorted(per_class)
        for i in range(len(singles)):
            a, b = rng.sample(names, 2)
            left, right = rng.choice(per_class[a]), rng.choice(per_class[b])
            canvas = Image.new("RGB", (size, size))
            for x, photo in ((0, left), (size // 2, right)):
                with Image.open(photo) as im:
                    canvas.paste(im.convert("RGB").resize((size // 2, size), Image.BILINEAR), (x, 0))
            path = dest / "mosaics" / split / f"{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            canvas.save(path, quality=95)
            rows.append((str(path.relative_to(dest)), ";".join(sorted({a, b})), split))
    tmp = labels.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "labels", "split"])
        writer.writerows(rows)
    tmp.rename(labels)
    return labels


def singles_file(root: Path, dest: Path) -> Path:
    """labels.csv of the single photos alone (one label a row), for the warm-run comparison."""
    path = dest / "singles.csv"
    if not path.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "labels", "split"])
            for split in SPLITS:
                for name, photos in class_photos(root, split).items():
                    writer.writerows((str(p), name, split) for p in photos)
    return path


def one_run(data: Path, out: Path, args, **options):
    import clf

    config = clf.RunConfig(backbone=args.backbone, data=str(data), weights=args.weights, output=str(out),
                           image_size=224, export=("h5",), force=True, **options)
    t0 = time.perf_counter()
    result = clf.run(config)
    return result, time.perf_counter() - t0


def compare_heads(name: str, args, cache: Path, work: Path) -> bool:
    ok = True
    target_map, target_f1 = TARGETS[name]
    features = f" (--tta {args.tta}, both heads)" if args.tta != "none" else ""
    print(f"\n{name}{features}: validation mAP / macro F1 (target mAP >= {target_map}, macro F1 >= {target_f1}; "
          f"default >= Keras at every seed)")
    print(f"{'seed':>4}  {'images':>6}  {'default mAP':>11}  {'default F1':>10}  {'keras mAP':>9}  {'keras F1':>8}  "
          f"{'default s':>9}  {'keras s':>7}  verdict")
    for seed in args.seeds:
        labels = make_mosaics(DATASETS[name], cache / f"{name}-s{seed}", seed)
        solved, _ = one_run(labels, work / f"{name}-s{seed}-solved", args, seed=seed, tta=args.tta)
        keras, _ = one_run(labels, work / f"{name}-s{seed}-keras", args, seed=seed, solver="keras",
                           epochs=args.epochs, tta=args.tta)
        s, k = solved.evaluation["validation"], keras.evaluation["validation"]
        good = (s["map"] >= k["map"] and s["macro_f1"] >= k["macro_f1"] and s["map"] >= target_map
                and s["macro_f1"] >= target_f1)
        ok = ok and good
        print(f"{seed:>4}  {s['images']:>6}  {s['map']:>11.4f}  {s['macro_f1']:>10.4f}  {k['map']:>9.4f}  "
              f"{k['macro_f1']:>8.4f}  {solved.timings['train']:>9.2f}  {keras.timings['train']:>7.2f}  "
              f"{'ok' if good else 'MISSED'}", flush=True)
    return ok


def warm_cost(name: str, args, cache: Path, work: Path) -> bool:
    singles = singles_file(DATASETS[name], cache / f"{name}-singles")
    one_run(singles, work / "warmup-single", args, task="single")  # fills the feature cache
    one_run(singles, work / "warmup-multi", args, task="multilabel")
    times: dict[str, list[float]] = {"single": [], "multilabel": []}
    for _ in range(args.repeats):
        for task in times:
            times[task].append(one_run(singles, work / f"warm-{task}", args, task=task)[1])
    single, multi = statistics.median(times["single"]), statistics.median(times["multilabel"])
    good = multi <= single + WARM_TARGET
    print(f"\n{name}, warm runs on the single photos' labels file (median of {args.repeats}): --task single "
          f"{single:.2f} s, --task multilabel {multi:.2f} s: {multi - single:+.2f} s, ratio {multi / single:.2f} "
          f"(target <= +{WARM_TARGET:g} s): {'ok' if good else 'MISSED'}")
    return good


def main(argv=None) -> int:
    args = parse_args(argv)
    import clf  # noqa: F401  (quiet TensorFlow before it logs)
    from clf.files import cache_dir

    cache = Path(args.cache) if args.cache else cache_dir("bench-multilabel")
    print(f"mosaic sets in {cache}; {args.backbone} at 224 px, weights {args.weights}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="clf-bench-multilabel-") as tmp:
        work = Path(tmp)
        for name in args.data:
            ok = compare_heads(name, args, cache, work) and ok
        ok = warm_cost(args.data[0], args, cache, work) and ok
    print("\nall targets met" if ok else "\nsome targets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
