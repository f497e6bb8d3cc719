"""Benchmark: what ``--folds`` and ``clf compare`` cost, and whether the fold interval
holds the accuracies single splits give.

(a) Cost, each against its baseline measured in the same invocation:
    - ``--folds 5`` on a warm run (features cached): the same run without it, alternated
      ``--repeats`` times; the medians, the seconds it adds (target <= 2 s), the ratio, and
      the cross_validate phase's own seconds.
    - ``clf compare RUN_A RUN_B --json`` in a fresh process (target <= 2 s), against the
      floor of any ``clf`` command, ``clf --help``, in a fresh process; and with the page.
(b) Interval vs single splits, per dataset: the train/ and val/ photos pooled into one
    folder per class (links), then the default run with ``--folds 5`` (seed 42) and five
    single-split runs (seeds 0-4, ``--validation-split 0.2``): their validation accuracies,
    and whether the 5-fold 95% t interval contains each. The dataset's own split is run
    too (its val/ accuracy against its 5-fold interval).

Every run: ``--backbone mobilenet_v2_035`` with the shared ImageNet weights, other settings
clf's defaults. Usage (from the repository root):
    python benchmarks/folds.py                          # hymenoptera and flowers5, (a) on flowers5
    python benchmarks/folds.py --part a --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
DATASETS = [SHARED / "datasets" / "hymenoptera", SHARED / "datasets" / "flowers5"]
TARGET = 2.0  # seconds: --folds 5 on a warm run, and clf compare


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=[str(d) for d in DATASETS], help="datasets for (b)")
    p.add_argument("--cost-data", default=str(SHARED / "datasets" / "flowers5"), help="dataset for (a)")
    p.add_argument("--weights", default=str(WEIGHTS))
    p.add_argument("--backbone", default="mobilenet_v2_035")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--part", choices=("a", "b", "both"), default="both")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    return p.parse_args(argv)


def one_run(data: Path, out: Path, args, **options):
    import clf

    config = clf.RunConfig(backbone=args.backbone, data=str(data), weights=args.weights, output=str(out), **options)
    t0 = time.perf_counter()
    result = clf.run(config)
    return result, time.perf_counter() - t0


def cost(args, work: Path) -> dict:
    data = Path(args.cost_data)
    one_run(data, work / "warmup", args)  # fills the feature cache: every later run is warm
    plain, folded, phase = [], [], []
    for i in range(args.repeats):  # alternated, so drift on a shared machine hits both alike
        _, seconds = one_run(data, work / f"plain-{i}", args)
        plain.append(seconds)
        result, seconds = one_run(data, work / f"folds-{i}", args, folds=args.folds)
        folded.append(seconds)
        phase.append(result.timings["cross_validate"])
    base, with_folds = statistics.median(plain), statistics.median(folded)
    added = with_folds - base
    print(f"(a) {data.name}, warm run: {base:.2f} s; with --folds {args.folds}: {with_folds:.2f} s; adds "
          f"{added:+.2f} s (ratio {with_folds / base:.3f}; cross_validate phase {statistics.median(phase):.2f} s; "
          f"target <= {TARGET} s: {'met' if added <= TARGET else 'MISSED'})", flush=True)

    def timed(command: list[str]) -> float:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    clf_cmd = [sys.executable, "-m", "clf.cli"]
    floor = timed([*clf_cmd, "--help"])
    runs = [str(work / "plain-0"), str(work / "folds-0")]
    compare = timed([*clf_cmd, "compare", *runs, "--json", "--no-page"])
    pages = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        subprocess.run([*clf_cmd, "compare", *runs, "--output", str(work / f"compare-page-{i}")], check=True,
                       capture_output=True)
        pages.append(time.perf_counter() - t0)
    page = statistics.median(pages)
    print(f"(a) clf compare of two runs ({data.name} validation): {compare:.2f} s (--json, no page), {page:.2f} s "
          f"with the page; 'clf --help' {floor:.2f} s; ratio {compare / floor:.2f} (target <= {TARGET} s: "
          f"{'met' if max(compare, page) <= TARGET else 'MISSED'})", flush=True)
    return {"dataset": data.name, "run_seconds": base, "folds_run_seconds": with_folds, "added_seconds": added,
            "ratio": with_folds / base, "cross_validate_seconds": statistics.median(phase),
            "compare_seconds": compare, "compare_page_seconds": page, "clf_help_seconds": floor}


def pooled(data: Path, dest: Path) -> Path:
    """``dest/<class>/`` linking every photo of ``data``'s train/ and val/ folders (names kept unique)."""
    for split in ("train", "val"):
        for folder in sorted(p for p in (data / split).iterdir() if p.is_dir()):
            (dest / folder.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(folder.iterdir()):
                if f.is_file():
                    (dest / folder.name / f"{split}-{f.name}").symlink_to(f.resolve())
    return dest


def interval_check(args, work: Path) -> list[dict]:
    out = []
    for data in map(Path, args.data):
        pool = pooled(data, work / f"pool-{data.name}")
        result, _ = one_run(pool, work / f"{data.name}-folds", args, folds=args.folds)
        cv = result.cross_validation["accuracy"]
        singles = {}
        for seed in args.seeds:
            run, _ = one_run(pool, work / f"{data.name}-seed{seed}", args, seed=seed)
            singles[seed] = run.metrics["validation_accuracy"]
        # One split's accuracy against where one split lands (the prediction interval), not the mean's interval.
        inside = {s: cv["split_low"] <= a <= cv["split_high"] for s, a in singles.items()}
        own, _ = one_run(data, work / f"{data.name}-own-split", args, folds=args.folds)
        own_cv, own_acc = own.cross_validation["accuracy"], own.metrics["validation_accuracy"]
        print(f"(b) {data.name} ({result.cross_validation['images']} photos pooled): {args.folds}-fold accuracy "
              f"{cv['mean']:.4f} [{cv['low']:.4f}, {cv['high']:.4f}] (mean), one split in [{cv['split_low']:.4f}, "
              f"{cv['split_high']:.4f}]; single splits "
              + ", ".join(f"seed {s} {a:.4f}{'' if inside[s] else ' (outside)'}" for s, a in singles.items())
              + f"; {sum(inside.values())} of {len(inside)} inside", flush=True)
        print(f"(b) {data.name}, its own train/val split: val accuracy {own_acc:.4f}; {args.folds}-fold "
              f"{own_cv['mean']:.4f}, one split in [{own_cv['split_low']:.4f}, {own_cv['split_high']:.4f}] "
              f"({'inside' if own_cv['split_low'] <= own_acc <= own_cv['split_high'] else 'outside'})", flush=True)
        out.append({"dataset": data.name, "folds": cv, "single_splits": singles, "inside": inside,
                    "own_split": {"validation_accuracy": own_acc, "folds": own_cv}})
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clf-folds-bench-") as tmp:
        work = Path(args.out or tmp)
        work.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("CLF_CACHE_DIR", str(work / "cache"))  # a first pass extracts, then warm
        report = {}
        if args.part in ("a", "both"):
            report["cost"] = cost(args, work)
        if args.part in ("b", "both"):
            report["intervals"] = interval_check(args, work)
        print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
