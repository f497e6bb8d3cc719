"""Benchmark: the photo-taking exported model (crop and resize inside) against clf's own
answer, and clf's accuracy before and after decoding JPEGs as Pillow does.

For each dataset, in one process:
  (a) before: default runs (one per seed) (mobilenet_v2_035, shared ImageNet weights, 224 px, every other
      setting clf's default) with JPEGs decoded by TensorFlow's default (fast) IDCT, as clf
      did before the photo input;
  (b) after: the same run as clf now does it (accurate integer IDCT: Pillow's pixels);
  mean validation accuracy of both over the seeds and the difference (target: within
  0.005; one run alone moves by a few photos when anything perturbs the features);
  (c) the client path: run (b)'s model.tflite in LiteRT, every validation photo decoded by
      Pillow and passed raw (the model crops and resizes): accuracy, top-1 agreement with
      ``clf predict`` and the largest probability difference;
then the cost of the in-model resize: ms per photo for the photo model at 500x375 and
4000x3000 against the fixed-size model fed 224x224.

The training resize itself did not change (the in-model one reproduces it; see
clf.data.fitting), so (a) vs (b) measures the decoder change alone.

Usage (from the repository root): python benchmarks/portable.py [--data DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
DEFAULT_DATA = [SHARED / "datasets" / "hymenoptera", SHARED / "datasets" / "flowers5"]


def old_decode_pixels(contents):
    """clf's decoding before the photo input: tf.io.decode_image (fast IDCT for JPEGs)."""
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def run(data: Path, out: Path, before: bool, args, seed: int) -> tuple[float, Path, float]:
    import clf
    from clf.data import images

    saved = images.decode_pixels
    if before:
        images.decode_pixels = old_decode_pixels
    try:
        t0 = time.perf_counter()
        result = clf.run(clf.RunConfig(backbone=args.backbone, weights=args.weights, data=str(data),
                                       image_size=args.image_size, output=str(out), export="keras,tflite",
                                       verify=not before,  # the old decoder fails the client check
                                       seed=seed,  # one feature cache per decoder, shared by the seeds
                                       cache_dir=str(out.parent / f"cache-{data.name}-{before}")))
        seconds = time.perf_counter() - t0
    finally:
        images.decode_pixels = saved
    return float(result.metrics["validation_accuracy"]), Path(result.run_dir), seconds


def client_path(run_dir: Path, data: Path) -> dict:
    """model.tflite in LiteRT on raw Pillow pixels vs clf predict, over the validation photos."""
    import clf
    from clf.artifacts.client import client_probabilities
    from clf.artifacts.predict import collect_images, predict_files

    labels = json.loads((run_dir / "labels.json").read_text())
    names = labels["class_names"]
    val = next(p for p in (data / "val", data / "validation") if p.is_dir())
    files = collect_images([val])
    truth = np.array([names.index(f.parent.name) for f in files])
    clf_probs = np.array([r.probabilities for r in predict_files(clf.load_predictor(run_dir / "model.keras"), files)])
    tflite = clf.load_predictor(run_dir / "model.tflite")
    t0 = time.perf_counter()
    raw = client_probabilities(tflite, files)
    seconds = time.perf_counter() - t0
    return {"photos": len(files), "runtime": tflite.runtime,
            "client_accuracy": float(np.mean(raw.argmax(1) == truth)),
            "clf_accuracy": float(np.mean(clf_probs.argmax(1) == truth)),
            "top1_agreement": float(np.mean(raw.argmax(1) == clf_probs.argmax(1))),
            "max_abs_diff": float(np.abs(raw - clf_probs).max()),
            "ms_per_photo": 1000 * seconds / len(files)}


def resize_cost(run_dir: Path, image_size: int, repeats: int = 5) -> dict:
    """ms per call of the photo model at two photo sizes, and of the fixed model at its size."""
    import clf
    import keras
    from clf.plugins.tflite_exporter import convert

    tflite = clf.load_predictor(run_dir / "model.tflite")
    model = keras.models.load_model(str(run_dir / "model.keras"), compile=False)
    fixed_path = run_dir.parent / "fixed.tflite"
    fixed_path.write_bytes(convert(clf.fixed_model(model)))
    from clf.plugins.tflite_exporter import TFLitePredictor

    fixed = TFLitePredictor(fixed_path, json.loads((run_dir / "labels.json").read_text()))
    rng = np.random.default_rng(0)
    out = {}
    for name, predictor, shape in (("fixed model, 224x224 input", fixed, (image_size, image_size)),
                                   ("photo model, 500x375 photo", tflite, (375, 500)),
                                   ("photo model, 4000x3000 photo", tflite, (3000, 4000))):
        x = rng.uniform(0, 255, (1, *shape, 3)).astype(np.float32)
        predictor.predict_batch(x)  # allocate
        t0 = time.perf_counter()
        for _ in range(repeats):
            predictor.predict_batch(x)
        out[name] = 1000 * (time.perf_counter() - t0) / repeats
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", help="dataset folder (repeatable); default: shared hymenoptera, flowers5")
    p.add_argument("--backbone", default="mobilenet_v2_035")
    p.add_argument("--weights", default=str(WEIGHTS) if WEIGHTS.exists() else "imagenet")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2], help="one default run per seed and decoder")
    args = p.parse_args(argv)
    datasets = [Path(d) for d in (args.data or DEFAULT_DATA)]
    report = {}
    with tempfile.TemporaryDirectory(prefix="clf-portable-") as tmp:
        for data in datasets:
            befores, afters = [], []
            for seed in args.seeds:
                b, _, _ = run(data, Path(tmp) / f"{data.name}-before-{seed}", True, args, seed)
                a, run_dir, _ = run(data, Path(tmp) / f"{data.name}-after-{seed}", False, args, seed)
                befores.append(b)
                afters.append(a)
                print(f"{data.name} seed {seed}: validation accuracy before {b:.4f}, after {a:.4f} "
                      f"({a - b:+.4f})", flush=True)
                if seed == args.seeds[0]:
                    client = client_path(run_dir, data)
            before, after = float(np.mean(befores)), float(np.mean(afters))
            report[data.name] = {"before": befores, "after": afters, "mean_before": before, "mean_after": after,
                                 "difference": after - before,
                                 "within_0.005": abs(after - before) <= 0.005 + 1e-9, "client_path": client}
            print(f"{data.name}: mean validation accuracy over {len(args.seeds)} seeds before {before:.4f}, "
                  f"after {after:.4f} (difference {after - before:+.4f}); client path (LiteRT, Pillow, raw photo): "
                  f"accuracy {client['client_accuracy']:.4f}, top-1 agreement with clf predict "
                  f"{client['top1_agreement']:.1%} on {client['photos']} photos, max |diff| "
                  f"{client['max_abs_diff']:.1e}, {client['ms_per_photo']:.1f} ms/photo", flush=True)
        report["resize_cost_ms"] = resize_cost(run_dir, args.image_size)
        for name, ms in report["resize_cost_ms"].items():
            print(f"{name}: {ms:.1f} ms", flush=True)
    print(json.dumps(report, indent=1))
    ok = all(r["within_0.005"] and r["client_path"]["top1_agreement"] == 1.0
             for k, r in report.items() if k != "resize_cost_ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
