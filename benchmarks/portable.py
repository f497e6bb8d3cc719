"""Benchmark: the photo-taking exported model (crop and resize inside) against clf's own
answer, and clf's accuracy before and after decoding JPEGs as Pillow does.

For each dataset, in one process:
  (a) before: a default run (mobilenet_v2_035, shared ImageNet weights, 224 px, every other
      setting clf's default) with JPEGs decoded by TensorFlow's default (fast) IDCT, as clf
      did before the photo input;
  (b) after: the same run as clf now does it (accurate integer IDCT: Pillow's pixels);
  validation accuracy of both and the difference (target: within 0.005), with the photos
  only one of them gets right (McNemar's exact test), and the same comparison with the
  Keras-fit head over a few seeds, whose spread shows how far one run moves by chance;
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


def run(data: Path, out: Path, before: bool, args, seed: int, **options) -> tuple[float, Path, np.ndarray]:
    """One run with the old (``before``) or the current decoder: validation accuracy, run
    folder, and which validation photos its model gets right (in ``validation_files`` order)."""
    import clf
    from clf.artifacts.predict import predict_files
    from clf.data import images

    saved = images.decode_pixels
    if before:
        images.decode_pixels = old_decode_pixels
    try:
        result = clf.run(clf.RunConfig(backbone=args.backbone, weights=args.weights, data=str(data),
                                       image_size=args.image_size, output=str(out),
                                       export=options.pop("export", "keras,tflite"),
                                       verify=not before,  # the old decoder fails the client check
                                       seed=seed,  # one feature cache per decoder, shared by the seeds
                                       cache_dir=str(out.parent / f"cache-{data.name}-{before}"), **options))
        files, truth = validation_files(data)
        predictor = clf.load_predictor(Path(result.run_dir) / "model.keras")
        right = np.array([np.argmax(r.probabilities) for r in predict_files(predictor, files)]) == truth
    finally:
        images.decode_pixels = saved
    return float(result.metrics["validation_accuracy"]), Path(result.run_dir), right


def validation_files(data: Path):
    from clf.artifacts.predict import collect_images

    val = next(p for p in (data / "val", data / "validation") if p.is_dir())
    names = sorted(p.name for p in val.iterdir() if p.is_dir())
    files = collect_images([val])
    return files, np.array([names.index(f.parent.name) for f in files])


def mcnemar(before: np.ndarray, after: np.ndarray) -> dict:
    """Photos only one of two models gets right, and the exact two-sided McNemar p-value
    (how likely a split at least this uneven is when neither decoder is better)."""
    from clf.report.confidence import mcnemar as paired_test  # clf compare's test

    pairs = paired_test(before, after)
    return {"right_before_only": pairs["right_only_a"], "right_after_only": pairs["right_only_b"],
            "p_value": pairs["p_value"]}


def client_path(run_dir: Path, data: Path) -> dict:
    """model.tflite in LiteRT on raw Pillow pixels vs clf predict, over the validation photos."""
    import clf
    from clf.artifacts.verify import client_probabilities
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

    tflite = clf.load_predictor(run_dir / "model.tflite")
    model = keras.models.load_model(str(run_dir / "model.keras"), compile=False)
    fixed_path = run_dir.parent / "fixed.tflite"
    fixed_path.write_bytes(clf.to_tflite(clf.fixed_model(model)))
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
    p.add_argument("--keras-seeds", type=int, nargs="*", default=[42, 1, 2],
                   help="seeds of --solver keras runs per decoder (the solved default head ignores the seed)")
    args = p.parse_args(argv)
    datasets = [Path(d) for d in (args.data or DEFAULT_DATA)]
    report = {}
    with tempfile.TemporaryDirectory(prefix="clf-portable-") as tmp:
        for data in datasets:
            before, _, right_before = run(data, Path(tmp) / f"{data.name}-before", True, args, 42)
            after, run_dir, right_after = run(data, Path(tmp) / f"{data.name}-after", False, args, 42)
            client = client_path(run_dir, data)
            pairs = mcnemar(right_before, right_after)
            # The Keras-fit head varies with the seed: its spread over seeds against the same
            # before/after difference says how much one run's accuracy moves by chance.
            keras_runs = {"before": [], "after": []}
            for seed in args.keras_seeds:
                for variant in ("before", "after"):
                    acc, _, _ = run(data, Path(tmp) / f"{data.name}-{variant}-keras-{seed}", variant == "before",
                                    args, seed, solver="keras", export="keras")
                    keras_runs[variant].append(acc)
            report[data.name] = {"before": before, "after": after, "difference": after - before,
                                 "within_0.005": abs(after - before) <= 0.005 + 1e-9, "photos": pairs,
                                 "client_path": client, "keras_head_by_seed": keras_runs}
            print(f"{data.name}: default run's validation accuracy before {before:.4f}, after {after:.4f} "
                  f"(difference {after - before:+.4f}; photos right only before {pairs['right_before_only']}, "
                  f"only after {pairs['right_after_only']}, McNemar p {pairs['p_value']:.2f})", flush=True)
            if args.keras_seeds:
                kb, ka = np.array(keras_runs["before"]), np.array(keras_runs["after"])
                print(f"{data.name}: --solver keras over seeds {args.keras_seeds}: before {kb.mean():.4f} "
                      f"(sd {kb.std(ddof=1) if len(kb) > 1 else 0:.4f}), after {ka.mean():.4f} "
                      f"(sd {ka.std(ddof=1) if len(ka) > 1 else 0:.4f}), difference {ka.mean() - kb.mean():+.4f}",
                      flush=True)
            print(f"{data.name}: client path (LiteRT, Pillow, raw photo): "
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
