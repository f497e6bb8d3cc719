"""Benchmark: feature extraction at the machine's limit (issue 18), every figure from one run.

Per backbone (mobilenet_v2_035 with the real ImageNet weights, efficientnet_b0 and vgg16
with random weights), at 224x224 with the 0.875 centre crop:
  forward-only img/s per runtime (TensorFlow, LiteRT, onnxruntime, OpenVINO) on decoded photos, with
      each runtime's relative max difference from TensorFlow's features, and what
      --runtime auto picks;
  decode-only img/s (today's full decode and the DCT-scaled one) per data set;
  extraction img/s (clf's pipeline: decode overlapped with the chosen runtime) and its ratio
      to the bottleneck min(decode-only, forward-only), and to the serial bound
      1 / (1/decode + 1/forward) that two CPU-bound stages sharing the same cores cannot beat;
  today's extraction (TensorFlow forward, full decode) and the speed-up over it;
on hymenoptera, flowers5 and synthetic 12 MP photos (real photos upscaled to 4032x3024 with
sensor-like noise, written to a temporary folder). Then full cold `clf run`s (empty feature
cache and converted-model store) on hymenoptera and flowers5 with --runtime auto against
--runtime tensorflow: validation accuracy and wall time.

The machine may be shared: every ratio compares figures measured in this same run, and
`uptime` is printed before and after.

Usage (from the repository root, after ``pip install -e ".[cpu,test]"``):
    python benchmarks/extract.py                       # everything, bounded (~10-20 min on 2 busy cores)
    python benchmarks/extract.py --backbones mobilenet_v2_035 --skip-runs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATASETS = SHARED / "datasets"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
SIZE = 224
CROP = 0.875
RUNTIMES = ("tensorflow", "tflite", "onnx", "openvino")
SLOW = {"vgg16"}  # backbones that get --slow-images per set instead of --images


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="mobilenet_v2_035,efficientnet_b0,vgg16")
    p.add_argument("--sets", default="hymenoptera,flowers5,12mp")
    p.add_argument("--images", type=int, default=240, help="images per set for the throughput parts")
    p.add_argument("--slow-images", type=int, default=64, help="the same for vgg16 (7 img/s on 2 cores)")
    p.add_argument("--photos-12mp", type=int, default=48, help="synthetic 12 MP photos to write")
    p.add_argument("--photos-dir", help="keep the 12 MP photos here (reused when already written)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--forward-seconds", type=float, default=3.0, help="time each runtime at least this long")
    p.add_argument("--skip-runs", action="store_true", help="skip the clf runs (accuracy, cold run time)")
    p.add_argument("--only-runs", action="store_true", help="only the clf runs")
    p.add_argument("--run-order", default="tensorflow,auto",
                   help="order of the cold runs per data set (the process's first run also pays its warm-up)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2, help="best of N for each throughput figure (a shared machine)")
    return p.parse_args(argv)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def spread(files: list, labels: list, n: int):
    """At most ``n`` files evenly spread over the (class-sorted) list."""
    if len(files) <= n:
        return files, labels
    idx = np.linspace(0, len(files) - 1, n).round().astype(int)
    return [files[i] for i in idx], [labels[i] for i in idx]


def dataset_files(root: Path):
    files, labels = [], []
    for split in ("train", "val"):
        for label, cls in enumerate(sorted(p.name for p in (root / split).iterdir() if p.is_dir())):
            found = sorted(str(f) for f in (root / split / cls).glob("*.jpg"))
            files += found
            labels += [label] * len(found)
    return files, labels


def write_12mp(folder: Path, n: int):
    """Real photos upscaled to 4032x3024 with sensor-like noise (sigma 4), JPEG quality 92."""
    from PIL import Image

    sources, _ = spread(*dataset_files(DATASETS / "hymenoptera"), n)
    files = []
    for i, src in enumerate(sources):
        photo = Image.open(src).convert("RGB").resize((4032, 3024), Image.BICUBIC)
        noisy = np.asarray(photo, np.float32) + np.random.default_rng(i).normal(0, 4, (3024, 4032, 3))
        path = folder / f"photo_{i:03d}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=92)
        files.append(str(path))
    return files, [0] * len(files)


def legacy_dataset(files, labels):
    """Today's main: every photo decoded at full size, centre-cropped, resized."""
    import tensorflow as tf

    from clf.data.images import _center_box

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        image = _center_box(image, (SIZE, SIZE), CROP)
        return tf.image.resize(image, (SIZE, SIZE), method="bilinear", antialias=True), label

    ds = tf.data.Dataset.from_tensor_slices((list(files), list(labels)))
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()


def new_dataset(files, labels):
    from clf.data.images import ImageSize, files_dataset

    return files_dataset(files, labels, ImageSize((SIZE, SIZE), CROP))


class Rate(float):
    """img/s (wall clock), with ``cpu_ms``: this process's CPU time per image, which other
    processes on a shared machine disturb far less than the wall clock."""

    cpu_ms: float


REPEATS = 2


def timed(work, n: int) -> Rate:
    """The best of ``REPEATS`` runs of ``work`` (other processes only ever slow it down)."""
    best = None
    for _ in range(REPEATS):
        t0, c0 = time.perf_counter(), os.times()
        work()
        wall, c1 = time.perf_counter() - t0, os.times()
        rate = Rate(n / wall)
        rate.cpu_ms = 1000 * ((c1.user - c0.user) + (c1.system - c0.system)) / max(n, 1)
        best = rate if best is None or rate > best else best
    return best


def decode_rate(dataset, batch_size: int, n: int) -> Rate:
    """Decoding alone, batched and prefetched as extraction does."""
    import tensorflow as tf

    def work():
        for _ in dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE):
            pass
    return timed(work, n)


def forward_rate(runtime, batch: np.ndarray, seconds: float) -> Rate:
    """Forward passes over one decoded batch, repeated for at least ``seconds`` (one at least)."""
    runtime.run(batch)  # warm
    per_call = 1 / timed(lambda: runtime.run(batch), 1)  # seconds
    calls = max(1, round(seconds / per_call))

    def work():
        for _ in range(calls):
            runtime.run(batch)
    return timed(work, calls * len(batch))


def extraction_rate(extractor, dataset, batch_size: int, n: int, forward) -> Rate:
    from clf.train.features import extract

    def work():
        features, _ = extract(extractor, dataset, batch_size, forward=forward)
        assert len(features) == n, (len(features), n)
    return timed(work, n)


def build_extractor(name: str):
    import keras

    from clf import get_host
    from clf.data.images import ImageSize
    from clf.train.features import make_extractor
    from clf.train.model import Classifier, build_backbone

    keras.utils.set_random_seed(0)
    backbone = get_host().backbones.get(name)
    weights = str(MOBILENET_WEIGHTS) if name == "mobilenet_v2_035" and MOBILENET_WEIGHTS.exists() else None
    base = build_backbone(backbone, (SIZE, SIZE), weights)
    return make_extractor(Classifier(None, base, None, backbone.preprocess), ImageSize((SIZE, SIZE), CROP)), \
        "imagenet" if weights else "random"


def bench_backbone(name: str, sets: dict, decode: dict, args) -> list[str]:
    from clf.infer.choice import BackboneRuntime, relative_difference
    from clf.infer.runners import TensorFlowRunner
    from clf.infer.store import OPENERS

    extractor, weights = build_extractor(name)
    cap = args.slow_images if name in SLOW else args.images
    first_files, _ = next(iter(sets.values()))
    batch = np.stack([x.numpy() for x, _ in new_dataset(first_files[:args.batch_size], [0] * args.batch_size)])
    tensorflow = TensorFlowRunner(extractor)
    reference = tensorflow.run(batch)
    runtimes, forward, lines = {"tensorflow": tensorflow}, {}, []
    for rt in RUNTIMES[1:]:
        t0 = time.perf_counter()
        try:
            runtimes[rt] = OPENERS[rt](extractor, None)
            diff = relative_difference(reference, runtimes[rt].run(batch))
        except Exception as exc:  # RuntimeUnavailable, or a conversion that does not run
            runtimes.pop(rt, None)
            lines.append(f"  {rt}: unavailable ({type(exc).__name__}: {exc})")
            continue
        lines.append(f"  {rt}: converted in {time.perf_counter() - t0:.1f}s, relative max diff from "
                     f"TensorFlow {diff:.1e}")
    for rt, runtime in runtimes.items():
        forward[rt] = forward_rate(runtime, batch, args.forward_seconds if name not in SLOW else 0.0)
    auto = BackboneRuntime("auto", extractor, None)
    auto.decide(batch)
    chosen = auto.name
    forward_line = ", ".join(f"{rt} {v:.1f}" + (f" ({v / forward['tensorflow']:.2f}x)" if rt != "tensorflow" else "")
                             + f" [{v.cpu_ms:.2f} cpu ms/img]" for rt, v in forward.items())
    out = [f"\n## {name} ({weights} weights), batch {args.batch_size}",
           f"forward only, img/s: {forward_line}; auto picks {chosen}", *lines,
           "img/s, [cpu ms/img] where given",
           "| set | images | decode today | decode (DCT) | forward ({0}) | extraction ({0}) | / bottleneck | "
           "/ serial bound | today's extraction (tensorflow, full decode) | speed-up |".format(chosen),
           "|---|---|---|---|---|---|---|---|---|---|"]
    chosen_forward = runtimes[chosen].run
    for set_name, (files, labels) in sets.items():
        files, labels = spread(files, labels, cap)
        n = len(files)
        d_old, d_new = decode[set_name] if name not in SLOW else (None, None)
        if d_new is None:  # the slow backbone's own (smaller) sample
            d_old = decode_rate(legacy_dataset(files, labels), args.batch_size, n)
            d_new = decode_rate(new_dataset(files, labels), args.batch_size, n)
        f = forward[chosen]
        extraction = extraction_rate(extractor, new_dataset(files, labels), args.batch_size, n, chosen_forward)
        today = extraction_rate(extractor, legacy_dataset(files, labels), args.batch_size, n, tensorflow.run)
        bottleneck = min(d_new, f)
        serial = 1 / (1 / d_new + 1 / f)
        out.append(f"| {set_name} | {n} | {d_old:.1f} [{d_old.cpu_ms:.1f}] | {d_new:.1f} [{d_new.cpu_ms:.1f}] | "
                   f"{f:.1f} [{f.cpu_ms:.1f}] | {extraction:.1f} [{extraction.cpu_ms:.1f}] | "
                   f"{extraction / bottleneck:.2f} | {extraction / serial:.2f} | {today:.1f} [{today.cpu_ms:.1f}] | "
                   f"{extraction / today:.2f}x |")
    return out


def clf_runs(args, work: Path) -> list[str]:
    import clf

    out = ["\n## cold clf run, mobilenet_v2_035 (ImageNet weights), --runtime auto vs tensorflow",
           "| data | runtime | chosen | agreement (rel. max diff) | validation accuracy | wall s | extract s | speed-up |",
           "|---|---|---|---|---|---|---|---|"]
    for data in ("hymenoptera", "flowers5"):
        results = {}
        for runtime in args.run_order.split(","):
            tag = f"{data}-{runtime}"
            config = clf.RunConfig(backbone="mobilenet_v2_035", data=str(DATASETS / data), epochs=args.epochs,
                                   weights=str(MOBILENET_WEIGHTS), output=str(work / "runs" / tag),
                                   cache_dir=str(work / "cache" / tag), runtime=runtime, batch_size=args.batch_size)
            t0 = time.perf_counter()
            result = clf.run(config)
            results[runtime] = (result, time.perf_counter() - t0)
        base = results["tensorflow"][1]
        for runtime, (result, wall) in results.items():
            record = result.manifest["runtime"]
            check = record.get("check") or {}
            diff = f"{check['relative_max_diff']:.1e}" if "relative_max_diff" in check else "-"
            out.append(f"| {data} | {runtime} | {record['name']} | {diff} | "
                       f"{result.metrics['validation_accuracy']:.4f} | {wall:.1f} | {result.timings.get('extract', 0):.1f} | "
                       f"{base / wall:.2f}x |")
        gap = abs(results["auto"][0].metrics["validation_accuracy"] - results["tensorflow"][0].metrics["validation_accuracy"])
        out.append(f"| {data} | accuracy gap | | | {gap:.4f} (target <= 0.005) | | | |")
    return out


def main(argv=None) -> int:
    global REPEATS
    args = parse_args(argv)
    REPEATS = max(1, args.repeats)
    print(f"# benchmarks/extract.py\nstart: {uptime()}\ncores: {os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="clf-bench-extract-") as tmp:
        work = Path(tmp)
        if args.only_runs:
            print("\n".join(clf_runs(args, work)), f"\nend: {uptime()}", flush=True)
            return 0
        sets = {}
        for name in args.sets.split(","):
            if name == "12mp":
                folder = Path(args.photos_dir) if args.photos_dir else work / "12mp"
                kept = sorted(str(f) for f in folder.glob("photo_*.jpg")) if folder.is_dir() else []
                if len(kept) >= args.photos_12mp:
                    sets[name] = kept[:args.photos_12mp], [0] * args.photos_12mp
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                sets[name] = write_12mp(folder, args.photos_12mp)
                print(f"wrote {len(sets[name][0])} 12 MP photos in {time.perf_counter() - t0:.0f}s", flush=True)
            else:
                sets[name] = dataset_files(DATASETS / name)
        decode = {}
        for name, (files, labels) in sets.items():
            files, labels = spread(files, labels, args.images)
            decode[name] = (decode_rate(legacy_dataset(files, labels), args.batch_size, len(files)),
                            decode_rate(new_dataset(files, labels), args.batch_size, len(files)))
            old, new = decode[name]
            print(f"decode only, {name} ({len(files)} images): today {old:.1f} img/s [{old.cpu_ms:.2f} cpu ms/img], "
                  f"DCT-scaled {new:.1f} img/s [{new.cpu_ms:.2f} cpu ms/img] ({new / old:.2f}x)", flush=True)
        for backbone in args.backbones.split(","):
            print("\n".join(bench_backbone(backbone, sets, decode, args)), flush=True)
        if not args.skip_runs:
            print("\n".join(clf_runs(args, work)), flush=True)
    print(f"\nend: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
