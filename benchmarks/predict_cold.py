"""Benchmark: predicting without TensorFlow (issue 29), every ratio from figures of this same run.

  (a) a cold process ``clf predict RUN photo.jpg``: the run folder (its verified model.tflite answers,
      no TensorFlow imported) against today's path (RUN/model.h5: Keras, TensorFlow imported);
  (b) the same on a folder of --photos photos, and with --runtime openvino;
  (c) ``clf backbones`` against ``python -c "import tensorflow"``;
  (d) MobileNetV2 0.35's frozen backbone (benchmarks/extract.py's extractor, 224x224): forward img/s in
      OpenVINO against LiteRT, at batch 1 and --batch-size, and what ``--runtime auto`` picks.
Targets: (a) <= 1.0 s and >= 5x faster; (b) >= 3x; (c) <= 0.25x; (d) OpenVINO >= 1.2x LiteRT.

Each cold figure is the best wall time of --repeats fresh processes (a shared machine: best of N).
Without --run, one run is trained first on hymenoptera with the real ImageNet weights (../shared),
exporting h5, tflite and onnx (features cached in ~/.cache/clf, so a second time is quick).

Usage (from the repository root, after ``pip install -e ".[cpu,test,openvino]"``):
    python benchmarks/predict_cold.py --repeats 5
    python benchmarks/predict_cold.py --run /tmp/my-run --repeats 2 --skip-forward
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "datasets" / "hymenoptera"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
CLF = [sys.executable, "-m", "clf.cli"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a run folder with h5 and tflite (verified); default: train one")
    p.add_argument("--photos", type=int, default=100, help="photos in the folder of part (b)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per cold figure (best of N)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--forward-seconds", type=float, default=2.0, help="time each runtime at least this long")
    p.add_argument("--skip-forward", action="store_true", help="skip part (d)")
    return p.parse_args(argv)


def uptime() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "?"


def cold(command: list[str], repeats: int) -> float:
    """Best wall seconds of ``repeats`` fresh processes running ``command`` (which must succeed)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        took = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        best = min(best, took)
    return best


def make_run(work: Path) -> Path:
    if not (DATA.exists() and WEIGHTS.exists()):
        raise SystemExit(f"{DATA} or {WEIGHTS} is absent: pass --run RUN_FOLDER (with h5 and tflite)")
    run = work / "run"
    subprocess.run([*CLF, "run", "--backbone", "mobilenet_v2_035", "--weights", str(WEIGHTS), "--data", str(DATA),
                    "--export", "h5,tflite,onnx", "--output", str(run), "--quiet"], check=True)
    return run


def photo_folder(work: Path, n: int) -> tuple[Path, Path]:
    """``(one photo, a folder of n photos)`` from hymenoptera's validation images (or any images in the run)."""
    from clf.infer.decode import collect_images

    files = collect_images(DATA / "val") if DATA.exists() else []
    if not files:
        raise SystemExit(f"{DATA / 'val'} holds no photos")
    folder = work / "photos"
    folder.mkdir()
    for i in range(n):
        source = files[i % len(files)]
        shutil.copy(source, folder / f"{i:04d}_{source.name}")
    return files[0], folder


def forward(args) -> list[str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from extract import build_extractor, forward_rate  # the extractor and timing of benchmarks/extract.py

    from clf.infer.choice import BackboneRuntime, relative_difference
    from clf.infer.runners import TensorFlowRunner
    from clf.infer.store import OPENERS

    extractor, weights = build_extractor("mobilenet_v2_035")
    rng = np.random.default_rng(0)
    lines = [f"\n(d) mobilenet_v2_035 ({weights} weights) frozen backbone, forward img/s (best of the "
             f"{args.forward_seconds:g}s timing)"]
    tensorflow = TensorFlowRunner(extractor)
    for size in (1, args.batch_size):
        batch = rng.uniform(0, 255, (size, 224, 224, 3)).astype(np.float32)
        reference = tensorflow.run(batch)
        rates = {}
        for name in ("tflite", "openvino"):
            try:
                runner = OPENERS[name](extractor, None)
            except Exception as exc:
                lines.append(f"  {name}: unavailable ({exc})")
                continue
            diff = relative_difference(reference, runner.run(batch))
            rates[name] = forward_rate(runner, batch, args.forward_seconds)
            lines.append(f"  batch {size}: {name} {rates[name]:.1f} img/s (relative max diff from TensorFlow "
                         f"{diff:.1e})")
        if len(rates) == 2:
            lines.append(f"  batch {size}: OpenVINO / LiteRT = {rates['openvino'] / rates['tflite']:.2f}x "
                         f"(target >= 1.2x)")
    auto = BackboneRuntime("auto", extractor, None)
    auto.decide(rng.uniform(0, 255, (args.batch_size, 224, 224, 3)).astype(np.float32))
    lines.append(f"  --runtime auto picks {auto.name} (check: {auto.check})")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"# predict_cold, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load {uptime()}, "
          f"repeats {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="clf-predict-cold-") as tmp:
        work = Path(tmp)
        run = Path(args.run) if args.run else make_run(work)
        photo, folder = photo_folder(work, args.photos)
        out = []
        for label, target in (("one photo", photo), (f"{args.photos} photos", folder)):
            free = cold([*CLF, "predict", str(run), str(target), "--json"], args.repeats)
            today = cold([*CLF, "predict", str(run / "model.h5"), str(target), "--json"], args.repeats)
            openvino = cold([*CLF, "predict", str(run), str(target), "--json", "--runtime", "openvino"], args.repeats)
            need = "<= 1.0 s and >= 5x" if label == "one photo" else ">= 3x"
            out.append(f"({'a' if label == 'one photo' else 'b'}) clf predict, {label}: without TensorFlow "
                       f"{free:.2f}s, OpenVINO {openvino:.2f}s, today's path (model.h5) {today:.2f}s; "
                       f"speed-up {today / free:.2f}x, OpenVINO {today / openvino:.2f}x (target {need})")
        backbones = cold([*CLF, "backbones"], args.repeats)
        tf_import = cold([sys.executable, "-c", "import tensorflow"], args.repeats)
        out.append(f"(c) clf backbones {backbones:.2f}s, python -c 'import tensorflow' {tf_import:.2f}s: "
                   f"{backbones / tf_import:.2f}x (target <= 0.25x)")
        print("\n".join(out), flush=True)
    if not args.skip_forward:
        print("\n".join(forward(args)))
    print(f"load after: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
