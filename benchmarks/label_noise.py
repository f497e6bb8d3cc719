"""Benchmark: does ``clf inspect`` find planted label errors, and how long does it take?

For each dataset: copy it, move a fraction (default 5%) of the training images to a wrong
class chosen at random (seeded), train with ``clf run`` (empty feature cache), then run
``clf inspect --json`` (warm: the run cached every image's features). Reported:

- precision and recall at k of the planted errors in the label issues list as the page
  shows it (cleanlab's flagged images, least likely label first), k = number planted; a
  random ranking's recall at k is the baseline (k / images);
- recall at 2k and average precision over the ranking of every image by label quality, and
  how many of the planted images cleanlab flagged at all;
- the seconds of ``clf inspect`` (a fresh process: Python, TensorFlow, the model,
  everything) and of the ``clf run`` before it, wall and CPU (CPU time barely moves with the
  load of a shared machine), and their ratio, measured in the same run;
- the same for ``clf inspect --solver keras`` (every fold's head trained with Adam and the
  run's epochs, as before the solved heads), the baseline of the solved ones.

    python benchmarks/label_noise.py                  # shared hymenoptera + flowers5
    python benchmarks/label_noise.py --data photos/ --fraction 0.1 --json results.json

Seconds depend on the machine and its load (on a shared machine, rerun to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
DEFAULT_DATA = [SHARED / "datasets" / "hymenoptera", SHARED / "datasets" / "flowers5"]


def plant(source: Path, target: Path, fraction: float, seed: int) -> list[str]:
    """Copy ``source`` to ``target`` and move ``fraction`` of its training images to another
    class folder; returns their new paths relative to ``target``."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    train = next(p for p in target.iterdir() if p.name.lower() in ("train", "training"))
    classes = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = sorted(f for c in classes for f in (train / c).iterdir() if f.is_file())
    rng = random.Random(seed)
    planted = []
    for f in rng.sample(files, round(fraction * len(files))):
        new = train / rng.choice([c for c in classes if c != f.parent.name]) / f.name
        f.rename(new)
        planted.append(new.relative_to(target).as_posix())
    return planted


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """``(wall seconds, CPU seconds, stdout)`` of a command. CPU time (user + system, all
    threads) hardly changes with the machine's load, so it compares across runs on a
    shared machine where wall time does not."""
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds, c1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return seconds, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime), done.stdout


def measure(data: Path, out: Path, args) -> dict:
    work = out / data.name
    planted = plant(data, work / "data", args.fraction, args.seed)
    env = {**os.environ, "CLF_CACHE_DIR": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    clf = [sys.executable, "-m", "clf.cli"]
    run_s, run_cpu, _ = timed([*clf, "run", "--backbone", args.backbone, "--weights", args.weights, "--data",
                      str(work / "data"), "--output", str(work / "run"), "--force", "--no-verify", "-q"], env)
    inspect_s, inspect_cpu, text = timed([*clf, "inspect", str(work / "run"), "--json"], env)
    row = {"dataset": data.name, "planted": len(planted), "run_seconds": run_s, "run_cpu_seconds": run_cpu,
           **score(json.loads(text), planted, inspect_s, inspect_cpu)}
    if args.baseline:
        base_s, base_cpu, base = timed([*clf, "inspect", str(work / "run"), "--json", "--solver", "keras"], env)
        row["keras"] = score(json.loads(base), planted, base_s, base_cpu)
    return row


def average_precision(ranking: list[str], planted: set[str]) -> float:
    """The mean, over the planted files, of the precision of the ranking down to each one: the
    whole ranking in one number (1.0: every planted file above every other)."""
    hits, total = 0, 0.0
    for rank, f in enumerate(ranking, 1):
        if f in planted:
            hits += 1
            total += hits / rank
    return total / len(planted) if planted else 0.0


def score(findings: dict, planted: list[str], seconds: float, cpu: float) -> dict:
    """How well one inspection's label issues find the planted files, and what it cost."""
    k = len(planted)
    shown = [i["file"] for i in findings["label_issues"]]
    hits = len(set(planted) & set(shown[:k]))
    ranking = [i["file"] for i in sorted(findings["images"], key=lambda i: i["quality"])]
    s = findings["summary"]
    return {
        "images": s["images"], "flagged": len(shown), "planted_flagged": len(set(planted) & set(shown)),
        "precision_at_k": hits / min(k, len(shown)) if shown else 0.0, "recall_at_k": hits / k,
        "random_recall_at_k": k / s["images"], "recall_at_2k": len(set(planted) & set(ranking[:2 * k])) / k,
        "average_precision": average_precision(ranking, set(planted)),
        "oof_accuracy": s["oof_accuracy"], "oof": s.get("oof_method", "keras"), "oof_l2": s.get("oof_l2"),
        "validation_accuracy": s["validation_accuracy"],
        "inspect_seconds": seconds, "inspect_seconds_in_process": findings["seconds"]["total"],
        "inspect_phases": findings["seconds"], "inspect_cpu_seconds": cpu,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", help="dataset folder with train/ (repeatable); default: shared hymenoptera, flowers5")
    p.add_argument("--fraction", type=float, default=0.05, help="share of training images moved to a wrong class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="mobilenet_v2_035")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else "imagenet")
    p.add_argument("--out", default="runs/bench-label-noise")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip clf inspect --solver keras (the Adam-trained out-of-fold heads)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for data in map(Path, args.data or DEFAULT_DATA):
        if not data.is_dir():
            print(f"skipped {data}: not there", flush=True)
            continue
        rows.append(measure(data, out, args))
        r = rows[-1]
        print(f"{r['dataset']}: {r['planted']} planted of {r['images']}; recall@k {r['recall_at_k']:.2f} "
              f"(random {r['random_recall_at_k']:.2f}); inspect {r['inspect_seconds']:.1f}s", flush=True)
    results = [(r, r) for r in rows] + [(r, r["keras"]) for r in rows if "keras" in r]
    print()
    print("| dataset | out-of-fold heads | images | planted (k) | flagged | precision@k | recall@k "
          "| random recall@k | recall@2k | average precision | out-of-fold acc |")
    print("| --- " * 11 + "|")
    for r, m in results:
        heads = f"solved (L2 {m['oof_l2']:.3g})" if m["oof"] == "solved" else "Adam (--solver keras)"
        print(f"| {r['dataset']} | {heads} | {m['images']} | {r['planted']} | {m['flagged']} ({m['planted_flagged']} "
              f"planted) | {m['precision_at_k']:.2f} | {m['recall_at_k']:.2f} | {m['random_recall_at_k']:.2f} "
              f"| {m['recall_at_2k']:.2f} | {m['average_precision']:.2f} | {m['oof_accuracy']:.3f} |")
    print()
    print("| dataset | out-of-fold heads | clf inspect (warm): wall s | CPU s | in process s | folds s "
          "| clf run (cold): wall s | CPU s | inspect / run (CPU) |")
    print("| --- " * 9 + "|")
    for r, m in results:
        print(f"| {r['dataset']} | {m['oof']} | {m['inspect_seconds']:.1f} | {m['inspect_cpu_seconds']:.1f} "
              f"| {m['inspect_seconds_in_process']:.1f} | {m['inspect_phases']['folds']:.1f} | {r['run_seconds']:.1f} "
              f"| {r['run_cpu_seconds']:.1f} | {m['inspect_cpu_seconds'] / r['run_cpu_seconds']:.2f} |")
    for r in rows:
        if "keras" in r:
            print(f"{r['dataset']}: solved / Adam heads: inspect CPU seconds x{r['inspect_cpu_seconds'] / r['keras']['inspect_cpu_seconds']:.2f}, "
                  f"recall@k {r['recall_at_k']:.2f} vs {r['keras']['recall_at_k']:.2f}")
    print()
    for r in rows:
        print(f"{r['dataset']}: clf inspect phases, wall s: "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["inspect_phases"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
