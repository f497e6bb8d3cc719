"""Throughput of clf on one accelerator: raw backbone forward pass vs clf's extraction and
training, in float32 and mixed precision. ``benchmarks/gpu_check.sh`` runs it on a GPU;
with small arguments it also runs on a CPU as a smoke test:

    python benchmarks/gpu_throughput.py --backbone mobilenet_v2_035 --size 32 --images 32 --batch 8

Images are generated (random JPEGs in a temp folder, 3 classes) and weights are random
(``--weights none``): throughput does not depend on the weights' values.

Numbers, all in images per second, per precision:
  forward    the backbone alone on one batch already on the device, repeated (the ceiling)
  extract    clf's path from JPEG files: decode, resize, Preprocess, backbone (inference)
  train      ``clf.run``: training images per second over epochs 2..N (epoch 1 traces;
             each epoch includes its pass over the 10% validation split)
and the ratios extract/forward and train/forward (1.0 means clf adds no overhead).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_images(root: Path, n: int, size: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class_{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


def timed(fn, repeats: int) -> float:
    """Best seconds of ``repeats`` calls after one warm-up call (tracing, autotuning)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class EpochClock:
    """An observer that notes when each training epoch ends."""

    def __init__(self):
        self.ends: list[float] = []

    def __getattr__(self, name):  # every other observer call: ignored
        return lambda *a, **k: None

    def epoch_end(self, phase, epoch, epochs, logs):
        self.ends.append(time.perf_counter())


def measure(args, precision: str, data: Path, workdir: Path) -> dict[str, float]:
    import numpy as np
    import tensorflow as tf

    import clf
    from clf.train.distribute import precision_scope
    from clf.train.model import build_classifier
    from clf.host.manager import get_host

    host = get_host(())
    backbone, head = host.backbones.get(args.backbone), host.heads.get("softmax")
    size = (args.size, args.size)
    with precision_scope(precision):
        model = build_classifier(backbone, head, 3, size, None, {})
    base = model.backbone

    # forward: the backbone alone, on a preprocessed batch that already sits on the device.
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (args.batch, *size, 3)).astype("float32"))
    forward_fn = tf.function(lambda t: base(t, training=False), jit_compile=False)
    seconds = timed(lambda: forward_fn(x).numpy(), args.repeats)
    forward = args.batch / seconds

    # extract: clf's own data path from files to features.
    bundle = host.loaders.get("directory").load(str(data), image_size=size, seed=0, validation_split=0.1)
    n_train = len(bundle.splits["train"])
    ds = bundle.train.batch(args.batch).prefetch(tf.data.AUTOTUNE)
    preprocess = model.model.get_layer("preprocess")
    extract_fn = tf.function(lambda t: base(preprocess(t), training=False))

    def extract_all():
        for images, _ in ds:
            extract_fn(images)

    extract = n_train / timed(extract_all, max(1, args.repeats // 3))

    # train: the whole clf.run, as a user runs it.
    config = clf.RunConfig(backbone=args.backbone, data=str(data), weights="none", epochs=args.epochs,
                           batch_size=args.batch, image_size=args.size, augment=False,
                           output=str(workdir / f"run-{precision}"), precision=precision,
                           validation_split=0.1)
    obs = EpochClock()
    clf.run(config, obs)
    # From the end of epoch 1 to the end of the last: leaves out tracing and warm-up.
    train = n_train * (len(obs.ends) - 1) / (obs.ends[-1] - obs.ends[0])
    return {"forward": forward, "extract": extract, "train": train}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="at least 2: epoch 1 is not timed")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--precisions", default="float32,mixed_float16")
    args = parser.parse_args()

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    print(f"TensorFlow {tf.__version__}; GPUs: {', '.join(names) or 'none (CPU only)'}")
    print(f"{args.backbone} at {args.size}x{args.size}, {args.images} generated images, batch {args.batch}, "
          f"{args.epochs} training epochs")
    with tempfile.TemporaryDirectory(prefix="clf-gpu-check-") as tmp:
        data = make_images(Path(tmp) / "data", args.images, args.size)
        rows = {}
        for precision in args.precisions.split(","):
            t0 = time.perf_counter()
            rows[precision] = measure(args, precision, data, Path(tmp))
            print(f"  measured {precision} in {time.perf_counter() - t0:.0f}s", flush=True)

    print(f"\n{'precision':<16}{'forward img/s':>15}{'extract img/s':>15}{'train img/s':>13}"
          f"{'extract/fwd':>13}{'train/fwd':>11}")
    for precision, r in rows.items():
        print(f"{precision:<16}{r['forward']:>15.1f}{r['extract']:>15.1f}{r['train']:>13.1f}"
              f"{r['extract'] / r['forward']:>13.2f}{r['train'] / r['forward']:>11.2f}")
    if "float32" in rows and len(rows) > 1:
        for precision, r in rows.items():
            if precision != "float32":
                print(f"{precision} vs float32: forward x{r['forward'] / rows['float32']['forward']:.2f}, "
                      f"extract x{r['extract'] / rows['float32']['extract']:.2f}, "
                      f"train x{r['train'] / rows['float32']['train']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
