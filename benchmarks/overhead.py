"""Benchmark: what a run costs beyond TensorFlow's own import, phase by phase.

Each measurement is a fresh process, as a user runs clf: ``python -c "import tensorflow"``
(the floor every TensorFlow program pays), then ``clf run`` cold (empty feature cache, empty
doctor cache) and warm (both filled) on the same data. For each run it prints the process's
wall time, each phase's seconds from the run's manifest.json, what is left outside the
engine (imports, plugin discovery, the CLI's report) and the overhead: warm minus the
import, cold minus the import and the extraction. The issue's targets: warm at most
import + 2.5 s; cold at most import + extraction + 2.5 s.

Usage (from the repository root, after ``pip install -e ".[cpu]"``):
    python benchmarks/overhead.py                                  # hymenoptera/val at 160 px
    python benchmarks/overhead.py --data ../shared/datasets/flowers5 --image-size 224
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
DEFAULT_DATA = SHARED / "datasets" / "hymenoptera" / "val"
TARGET = 2.5  # seconds beyond the import (and the extraction, cold)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--backbone", default="mobilenet_v2_035")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else "imagenet")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--repeat", type=int, default=3, help="import-tensorflow runs (median) and warm runs (median)")
    p.add_argument("--extra", default="", help="more clf run flags, e.g. '--solver keras --epochs 20'")
    return p.parse_args(argv)


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return seconds


def clf_run(args, work: Path, name: str, env: dict) -> tuple[float, dict]:
    out = work / name
    cmd = [sys.executable, "-m", "clf.cli", "run", "--backbone", args.backbone, "--weights", args.weights,
           "--data", args.data, "--image-size", str(args.image_size), "--output", str(out),
           "--cache-dir", str(work / "features"), "-q", *args.extra.split()]
    seconds = timed(cmd, env)
    return seconds, json.loads((out / "manifest.json").read_text())["wall_seconds"]


def show(name: str, seconds: float, phases: dict, tf_import: float, extraction: float = 0.0):
    engine = phases.get("total", 0.0)
    inner = "  ".join(f"{k} {v:.2f}" for k, v in phases.items() if k != "total")
    overhead = seconds - tf_import - extraction
    verdict = "met" if overhead <= TARGET else "NOT met"
    print(f"\n{name}: {seconds:.2f} s in all; engine {engine:.2f} s ({inner})")
    print(f"  outside the engine (imports, plugins, CLI report): {seconds - engine:.2f} s")
    print(f"  overhead beyond the TensorFlow import{' and the extraction' if extraction else ''}: {overhead:.2f} s "
          f"(target <= {TARGET} s: {verdict}); ratio to the import {seconds / tf_import:.2f}x")


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="clf-overhead-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CLF_CACHE_DIR": str(work / "cache")}
    print(f"clf overhead: {args.data} with {args.backbone} at {args.image_size} px; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    try:
        imports = [timed([sys.executable, "-c", "import tensorflow"], env) for _ in range(args.repeat)]
        tf_import = statistics.median(imports)
        print(f"python -c 'import tensorflow': median {tf_import:.2f} s of {', '.join(f'{t:.2f}' for t in imports)}")
        cold_s, cold = clf_run(args, work, "cold", env)
        show("cold run (empty caches)", cold_s, cold, tf_import, cold.get("extract", 0.0))
        warm = [clf_run(args, work, f"warm-{i}", env) for i in range(args.repeat)]
        warm_s, warm_phases = sorted(warm, key=lambda r: r[0])[(len(warm) - 1) // 2]
        show(f"warm run (caches filled; median of {len(warm)}: {', '.join(f'{s:.2f}' for s, _ in warm)})",
             warm_s, warm_phases, tf_import)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f} (other processes share these CPUs: absolute "
          f"seconds include that; the ratios come from the same minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
