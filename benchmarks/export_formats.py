"""Every export format on a real run: size on disk, predict latency and agreement with
the Keras model, with the Keras artifact as the baseline (ratios printed).

    python benchmarks/export_formats.py [--data ../shared/datasets/hymenoptera]
        [--weights ../shared/weights/mobilenet_v2_0.35_224_imagenet_notop.weights.h5]
        [--epochs 3] [--out runs/bench-export] [--json results.json]

Trains mobilenet_v2_035 (224 px, real ImageNet weights) with clf.run, exports h5, keras,
savedmodel, tflite (float32) and onnx, plus TFLite float16/dynamic/int8 (int8 calibrated
as clf.run does: up to 300 training images spread over the classes), then on the validation images measures for each artifact:
top-1 agreement and max |diff| of probabilities against the in-memory Keras model, and
latency per image at batch 1 (median of single-image calls after warm-up) and at batch
32 (wall time / images). Numbers depend on the machine and its load: rerun to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


def size_on_disk(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "datasets" / "hymenoptera"))
    ap.add_argument("--weights", default=str(SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="runs/bench-export")
    ap.add_argument("--single", type=int, default=50, help="images timed one at a time")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    import numpy as np

    import clf
    from clf.artifacts.labels import read_labels
    from clf.plugins.tflite_exporter import export_tflite
    from clf.data.images import ImageSize
    from clf.artifacts.exporting import representative_data
    from clf.artifacts.verify import compare
    from clf.infer.decode import Decoder
    from clf.infer.forward import batch_fn, in_batches

    out = Path(args.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    t0 = time.perf_counter()
    result = clf.run(clf.RunConfig(backbone="mobilenet_v2_035", data=args.data, weights=args.weights,
                                   epochs=args.epochs, output=str(out), export="h5,keras,savedmodel,tflite,onnx",
                                   augment=False))
    print(f"trained and exported in {time.perf_counter() - t0:.0f}s; validation accuracy "
          f"{result.metrics.get('validation_accuracy', float('nan')):.3f}", flush=True)
    labels = read_labels(result.run_dir)
    from clf.host.manager import get_host

    size = ImageSize((224, 224), labels["resize"]["center_crop"])  # as the run decoded its photos
    bundle = get_host().loaders.get("directory").load(args.data, image_size=size, seed=42,
                                                      validation_split=0.2)
    for mode in ("float16", "dynamic", "int8"):  # int8 calibrates exactly as clf.run does
        export_tflite(result.model, result.run_dir, labels, quantize=mode,
                      representative_data=representative_data(bundle))

    val_files = bundle.splits["validation"].files
    x = Decoder(size).batch(val_files)
    reference = in_batches(batch_fn(result.model), x)
    accuracy = float(np.mean(reference.argmax(1) == np.asarray(bundle.splits["validation"].labels)))

    from clf.plugins.tflite_exporter import TFLitePredictor

    host = get_host()
    rows = []
    artifacts = [("h5", "model.h5"), ("keras", "model.keras"), ("savedmodel", "saved_model"),
                 ("onnx", "model.onnx"), ("tflite", "model.tflite"), ("tflite", "model_float16.tflite"),
                 ("tflite", "model_dynamic.tflite"), ("tflite", "model_int8.tflite")]
    for exporter, name in artifacts:
        path = result.run_dir / name
        load = host.exporters.get(exporter).load
        predictor = TFLitePredictor(path, labels) if exporter == "tflite" else load(path, labels)
        got = in_batches(predictor.predict_batch, x)
        diff, agreement, _ = compare(reference, got, predictor.quantization)
        for i in range(3):  # warm-up
            predictor.predict_batch(x[i:i + 1])
        single = []
        for i in range(min(args.single, len(x))):
            t = time.perf_counter()
            predictor.predict_batch(x[i:i + 1])
            single.append(time.perf_counter() - t)
        t = time.perf_counter()
        in_batches(predictor.predict_batch, x, 32)
        batched = (time.perf_counter() - t) / len(x)
        row = {"format": name, "exporter": exporter, "runtime": predictor.runtime,
               "quantization": predictor.quantization, "bytes": size_on_disk(path),
               "ms_per_image_batch1": 1000 * statistics.median(single), "ms_per_image_batch32": 1000 * batched,
               "top1_agreement": agreement, "max_abs_diff": diff,
               "accuracy": float(np.mean(got.argmax(1) == np.asarray(bundle.splits["validation"].labels)))}
        rows.append(row)
        print(json.dumps(row), flush=True)

    base = next(r for r in rows if r["format"] == "model.keras")
    print(f"\n{len(x)} validation images ({Path(args.data).name}), Keras model accuracy {accuracy:.3f}; "
          f"ratios against model.keras (the baseline)\n")
    print("| format | runtime | size on disk | ms/image, batch 1 (vs .keras) | ms/image, batch 32 (vs .keras) "
          "| top-1 agreement with Keras | max abs diff | accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        q = "" if r["quantization"] == "none" else f" ({r['quantization']})"
        print(f"| `{r['format']}`{q} | {r['runtime']} | {r['bytes'] / 1e6:.2f} MB | "
              f"{r['ms_per_image_batch1']:.2f} ({r['ms_per_image_batch1'] / base['ms_per_image_batch1']:.2f}x) | "
              f"{r['ms_per_image_batch32']:.2f} ({r['ms_per_image_batch32'] / base['ms_per_image_batch32']:.2f}x) | "
              f"{r['top1_agreement']:.1%} | {r['max_abs_diff']:.1e} | {r['accuracy']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": len(x), "keras_accuracy": accuracy, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
