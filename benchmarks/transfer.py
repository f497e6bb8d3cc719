"""Benchmark: clf's cached-feature transfer learning against the recipes it replaces.

On the same data, backbone, image size and epochs, in one run:
  first, as a user runs them, each in a fresh process (TensorFlow's import included):
  (s) the hand-written cached-feature script (benchmarks/cached_features_script.py:
      image_dataset_from_directory, features once, a Keras head; no cache between runs),
      against ``clf run`` cold (empty caches) and warm (caches filled): the ratios;
  then, in this process, on datasets up to --baseline-max-images:
  (a) the tutorial recipe: Sequential(frozen base, Dense 256 relu, Dropout 0.5, softmax),
      fed by an ImageDataGenerator-equivalent live pipeline, backbone forward every epoch;
  (b) the Keras guide recipe (keras.io/guides/transfer_learning):
      image_dataset_from_directory + .cache() + in-model augmentation + frozen base;
  (c) clf cold (empty feature cache) and (d) clf warm (cache filled), each a full clf.run;
then clf's validation accuracy at seeds 0..N-1, its extraction throughput against the raw
backbone forward on decoded images, the levers (--tta flip, augmented copies, class weights
on an imbalanced subset, fine-tuning with its schedule) and folder prediction against one
image at a time.

Keras 3 has no ImageDataGenerator. (a) reproduces ``ImageDataGenerator(shear_range=0.2,
zoom_range=0.2, horizontal_flip=True, preprocessing_function=preprocess_input)
.flow_from_directory(target_size, batch_size=32)`` with the closest Keras 3 means: a
``keras.utils.PyDataset`` (the successor of the DirectoryIterator/Sequence, one worker, as
fit used by default), images loaded one by one with ``keras.utils.load_img`` (PIL, nearest
interpolation: flow_from_directory's default), and per image the same random affine
transform ImageDataGenerator draws (shear angle in degrees, independent x/y zoom in
[0.8, 1.2], matrix centred as ``transform_matrix_offset_center``), applied with
``keras.ops.image.affine_transform`` (bilinear, fill 'nearest': scipy's ``order=1,
mode='nearest'`` that ImageDataGenerator used), then a random horizontal flip, then the
preprocessing function. The tutorial's ``rescale=1/255`` is replaced by the backbone's own
``preprocess_input`` so that accuracy compares recipes, not a preprocessing bug.

Usage (from the repository root, after ``pip install -e ".[cpu]"``):
    python benchmarks/transfer.py                       # shared hymenoptera + flowers5
    python benchmarks/transfer.py --data photos/ --backbone mobilenet_v2_035 --weights FILE
"""

from __future__ import annotations

import argparse
import json
import math
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
DEFAULT_WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
DEFAULT_DATA = [SHARED / "datasets" / "hymenoptera", SHARED / "datasets" / "flowers5"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", help="dataset folder (repeatable); default: shared hymenoptera, flowers5")
    p.add_argument("--backbone", default="mobilenet_v2_035")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else "imagenet")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--baseline-max-images", type=int, default=1000,
                   help="run the slow parts (baselines (a), (b); the augmentation and fine-tuning levers) only "
                        "on datasets up to this many images (0: always)")
    p.add_argument("--center-crop", type=float, default=0.875, help="clf's --center-crop (0: whole photo)")
    p.add_argument("--seeds", type=int, default=5, help="clf warm runs with seeds 0..N-1 (the solved head: one figure)")
    p.add_argument("--throughput-images", type=int, default=500,
                   help="images (spread over the dataset) for the extraction-throughput measurement")
    p.add_argument("--augment-copies", type=int, default=2)
    p.add_argument("--fine-tune-layers", default="10")
    p.add_argument("--fine-tune-epochs", type=int, default=3)
    p.add_argument("--no-levers", action="store_true", help="skip augmentation/class-weight/fine-tune runs")
    p.add_argument("--predict-single", type=int, default=40, help="images for the one-at-a-time prediction loop")
    p.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width for the hand-written script (s)")
    return p.parse_args(argv)


def files_of(root: Path):
    """(train files, train labels, val files, val labels, class names) the way clf loads them."""
    from clf import get_host

    bundle = get_host().loaders.get("directory").load(str(root), image_size=(32, 32), seed=42,
                                                     validation_split=0.2)
    tr, va = bundle.splits["train"], bundle.splits["validation"]
    return tr.files, tr.labels, va.files, va.labels, bundle.class_names


def build_base(args):
    from clf import get_host

    backbone = get_host().backbones.get(args.backbone)
    weights = None if args.weights == "none" else args.weights
    base = backbone.build((args.image_size, args.image_size, 3), weights)
    base.trainable = False
    return base, backbone.preprocess


class TutorialGenerator:
    """ImageDataGenerator(...).flow_from_directory(...) reproduced with Keras 3 means."""

    @staticmethod
    def make(files, labels, size, batch_size, augment, preprocess, seed, shuffle):
        import keras

        class Gen(keras.utils.PyDataset):
            def __init__(self):
                super().__init__(workers=1, use_multiprocessing=False)
                self.rng = np.random.default_rng(seed)
                self.order = np.arange(len(files))
                self.on_epoch_end()

            def __len__(self):
                return math.ceil(len(files) / batch_size)

            def on_epoch_end(self):
                if shuffle:
                    self.rng.shuffle(self.order)

            def __getitem__(self, i):
                idx = self.order[i * batch_size:(i + 1) * batch_size]
                x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
                    files[j], target_size=(size, size), interpolation="nearest")) for j in idx])
                if augment:
                    x = np.array(keras.ops.image.affine_transform(
                        x, np.stack([self.transform(size) for _ in idx]),
                        interpolation="bilinear", fill_mode="nearest"))
                    flip = self.rng.random(len(idx)) < 0.5
                    x[flip] = x[flip, :, ::-1]
                return preprocess(x), np.asarray([labels[j] for j in idx], np.int32)

            def transform(self, size):
                # ImageDataGenerator.get_random_transform + apply_affine_transform, in
                # (row, col) coordinates; shear_range is in degrees there.
                shear = np.deg2rad(self.rng.uniform(-0.2, 0.2))
                zx, zy = self.rng.uniform(0.8, 1.2, 2)
                m = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]]) @ \
                    np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
                o = size / 2 + 0.5
                m = np.array([[1, 0, o], [0, 1, o], [0, 0, 1]]) @ m @ np.array([[1, 0, -o], [0, 1, -o], [0, 0, 1]])
                # keras.ops.image.affine_transform maps output (x=col, y=row) to input.
                return np.array([m[1, 1], m[1, 0], m[1, 2], m[0, 1], m[0, 0], m[0, 2], 0, 0], np.float32)

        return Gen()


def recipe_tutorial(args, data):
    import keras

    from clf.data.preprocessing import get_preprocess

    tr_f, tr_y, va_f, va_y, names = data
    base, mode = build_base(args)
    pre = get_preprocess(mode)

    def preprocess(x):
        return np.asarray(pre(x))

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((args.image_size, args.image_size, 3)), base,
                              keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.5),
                              keras.layers.Dense(len(names), activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(4e-4), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    train = TutorialGenerator.make(tr_f, tr_y, args.image_size, args.batch_size, True, preprocess, 0, True)
    val = TutorialGenerator.make(va_f, va_y, args.image_size, args.batch_size, False, preprocess, 0, False)
    t0 = time.perf_counter()
    h = model.fit(train, validation_data=val, epochs=args.epochs, verbose=0)
    return time.perf_counter() - t0, h.history["val_accuracy"][-1]


def recipe_keras_guide(args, root):
    import keras
    import tensorflow as tf

    base, mode = build_base(args)
    dirs = {p.name.lower(): p for p in Path(root).iterdir() if p.is_dir()}
    size = (args.image_size, args.image_size)
    kw = dict(image_size=size, batch_size=args.batch_size, seed=1337, verbose=False)
    if "train" in dirs and ("val" in dirs or "validation" in dirs):
        train_ds = keras.utils.image_dataset_from_directory(dirs["train"], shuffle=True, **kw)
        val_ds = keras.utils.image_dataset_from_directory(dirs.get("val") or dirs["validation"], shuffle=False, **kw)
    else:
        train_ds = keras.utils.image_dataset_from_directory(root, validation_split=0.2, subset="training", **kw)
        val_ds = keras.utils.image_dataset_from_directory(root, validation_split=0.2, subset="validation", **kw)
    n = len(train_ds.class_names)
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE).cache()
    val_ds = val_ds.prefetch(tf.data.AUTOTUNE).cache()
    keras.utils.set_random_seed(0)
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)])
    inputs = keras.Input((*size, 3))
    x = augmentation(inputs)
    x = keras.layers.Rescaling(scale=1 / 127.5, offset=-1)(x) if mode.startswith("mobilenet") else x
    x = base(x, training=False)  # pooled already: the guide's GlobalAveragePooling2D
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(n)(x))
    model.compile(optimizer=keras.optimizers.Adam(), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t0 = time.perf_counter()
    h = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0)
    return time.perf_counter() - t0, h.history["val_accuracy"][-1]


def clf_run(args, root, cache_dir, out_dir, **changes):
    import clf

    cfg = dict(backbone=args.backbone, data=str(root), weights=args.weights, image_size=args.image_size,
               epochs=args.epochs, batch_size=args.batch_size, cache_dir=str(cache_dir), augment=True,
               center_crop=args.center_crop,
               output=str(out_dir / f"run-{len(list(out_dir.iterdir()))}"))
    cfg.update(changes)
    t0 = time.perf_counter()
    result = clf.run(clf.RunConfig(**cfg))
    return time.perf_counter() - t0, result


def extraction_throughput(args, data):
    """clf's extraction from JPEG files vs the raw backbone forward on decoded tensors.

    The raw forward is the limit of this machine: the same traced extractor, fed batches of
    images that are already decoded and resized, in memory (no tf.data, no copies)."""
    from clf.data.images import ImageSize, files_dataset
    from clf.train.features import extract, make_extractor
    from clf.infer.forward import forward_fn
    from clf.train.model import Classifier

    tr_f, tr_y, va_f, va_y, _ = data
    # An evenly spread sample keeps this to seconds on large datasets; the rate is per image.
    files, labels = tr_f + va_f, tr_y + va_y
    keep = np.linspace(0, len(files) - 1, min(len(files), args.throughput_images)).round().astype(int)
    files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    size = ImageSize((args.image_size, args.image_size), args.center_crop)
    base, mode = build_base(args)
    extractor = make_extractor(Classifier(None, base, None, mode), size)
    ds = files_dataset(files, labels, size)
    extract(extractor, ds.take(args.batch_size), args.batch_size)  # trace once, warm caches
    t0 = time.perf_counter()
    extract(extractor, ds, args.batch_size)
    t_files = time.perf_counter() - t0
    t0 = time.perf_counter()
    images = np.stack([x.numpy() for x, _ in ds])  # decoded, in memory
    t_decode = time.perf_counter() - t0
    forward = forward_fn(extractor)
    t0 = time.perf_counter()
    for i in range(0, len(images), args.batch_size):
        forward(images[i:i + args.batch_size]).numpy()
    t_mem = time.perf_counter() - t0
    return len(files) / t_files, len(files) / t_mem, len(files) / t_decode


def class_weight_effect(args, root, data, cache_dir, out_dir):
    """An imbalanced copy of the training set (largest class kept, the others cut to a fifth)
    with 'none' vs 'balanced' weights: mean per-class recall on the untouched validation set."""
    import clf
    from clf.train.feature_cache import FeatureCache  # noqa: F401  (features hit the warm cache)

    tr_f, tr_y, va_f, va_y, names = data
    tmp = out_dir / "imbalanced"
    counts = np.bincount(tr_y)
    keep_full = int(np.argmax(counts))
    for cls in range(len(names)):
        picked = [f for f, y in zip(tr_f, tr_y) if y == cls]
        if cls != keep_full:
            picked = picked[: max(2, len(picked) // 5)]
        for f in picked:
            dst = tmp / "train" / names[cls] / Path(f).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(f), dst)
    for f, y in zip(va_f, va_y):
        dst = tmp / "val" / names[y] / Path(f).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.abspath(f), dst)
    out = {}
    for mode in ("none", "balanced"):
        _, result = clf_run(args, tmp, cache_dir, out_dir, class_weight=mode)
        probs = result.model.predict(_decoded(va_f, args.image_size, args.center_crop), verbose=0, batch_size=64)
        pred = probs.argmax(1)
        recall = [float(np.mean(pred[np.asarray(va_y) == c] == c)) for c in range(len(names))]
        out[mode] = (result.metrics["validation_accuracy"], float(np.mean(recall)))
    return out


def _decoded(files, size, center_crop):
    from clf.data.images import ImageSize, files_dataset

    ds = files_dataset(files, [0] * len(files), ImageSize((size, size), center_crop)).batch(64)
    return np.concatenate([x.numpy() for x, _ in ds])


def prediction_speed(args, run_dir, files):
    """clf's batched folder prediction vs the tutorial's one-image-at-a-time loop."""
    import keras

    import clf

    predictor = clf.load_predictor(run_dir)
    clf.predict_files(predictor, files[:4])  # warm up
    t0 = time.perf_counter()
    clf.predict_files(predictor, files, batch_size=32)
    batched = len(files) / (time.perf_counter() - t0)
    single = files[: args.predict_single]
    model = predictor.model
    t0 = time.perf_counter()
    for f in single:  # load_img, img_to_array, expand_dims, model.predict: as the tutorial does
        x = keras.utils.img_to_array(keras.utils.load_img(f, target_size=predictor.input_size))
        model.predict(x[None], verbose=0)
    one = len(single) / (time.perf_counter() - t0)
    return batched, one


def main(argv=None) -> int:
    args = parse_args(argv)
    roots = [Path(d) for d in (args.data or [str(p) for p in DEFAULT_DATA if p.exists()])]
    if not roots:
        print("No datasets: pass --data DIR (a folder of class folders, or of train/ val/).")
        return 2
    import tensorflow as tf

    print(f"clf transfer benchmark: backbone {args.backbone}, weights {Path(args.weights).name}, "
          f"{args.image_size}px, {args.epochs} epochs, batch {args.batch_size}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start, "
          f"TensorFlow {tf.__version__}")
    work = Path(tempfile.mkdtemp(prefix="clf-bench-"))
    t_all = time.perf_counter()
    try:
        for root in roots:
            report(args, root, work / root.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal benchmark time {time.perf_counter() - t_all:.0f}s; load average at end "
          f"{os.getloadavg()[0]:.2f} (other processes share these CPUs: timings include that)")
    return 0


def process_wall(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return time.perf_counter() - t0, done.stdout


def processes(args, root: Path, work: Path) -> Path:
    """(s): the hand-written script, clf cold and clf warm, each a fresh process. Returns
    the feature cache folder clf filled (the in-process runs that follow reuse it)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CLF_CACHE_DIR": str(work / "clf-cache")}
    script = [sys.executable, str(ROOT / "benchmarks" / "cached_features_script.py"), str(root), args.weights,
              "--image-size", str(args.image_size), "--alpha", str(args.alpha), "--epochs", str(args.epochs),
              "--output", str(work / "script-model.keras")]
    t_script, out = process_wall(script, env)
    script_acc = json.loads(out.strip().splitlines()[-1])["val_accuracy"]
    runs = {}
    for name in ("cold", "warm"):
        cmd = [sys.executable, "-m", "clf.cli", "run", "--backbone", args.backbone, "--weights", args.weights,
               "--data", str(root), "--image-size", str(args.image_size), "--center-crop", str(args.center_crop),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--cache-dir",
               str(work / "features"), "--output", str(work / f"process-{name}"), "-q"]
        seconds, _ = process_wall(cmd, env)
        manifest = json.loads((work / f"process-{name}" / "manifest.json").read_text())
        runs[name] = (seconds, manifest)
    print(f"\n  fresh processes (TensorFlow's import included in each):")
    print(f"  {'':<58} {'wall s':>8} {'vs (s)':>8} {'val acc':>8}")
    print(f"  {'(s) hand-written cached-feature script (extracts every run)':<58} {t_script:>8.1f} {'1.0x':>8} "
          f"{script_acc:>8.4f}")
    for name, (seconds, manifest) in runs.items():
        label = f"clf run {name} ({'empty caches' if name == 'cold' else 'caches filled'})"
        print(f"  {label:<58} {seconds:>8.1f} {t_script / seconds:>7.1f}x "
              f"{manifest['metrics']['validation_accuracy']:>8.4f}")
    cold = runs["cold"][1]
    print(f"  clf cold phases: {', '.join(f'{k} {v:.1f}' for k, v in cold['wall_seconds'].items())}; "
          f"head: {describe_training(cold['training']['head'])}")
    print(f"  goals on flowers5: cold >= 1.7x, warm >= 7x the script")
    return work / "features"


def describe_training(info: dict) -> str:
    if info.get("solver") == "lbfgs":
        return f"solved (L-BFGS), L2 {info['l2']:.3g} by {info['selection']}, {info['seconds']:.2f}s"
    return f"Keras fit, kept epoch {info.get('kept_epoch')} ({info.get('kept')})"


def report(args, root: Path, work: Path):
    work.mkdir(parents=True)
    out_dir = work / "runs"
    out_dir.mkdir()
    data = files_of(root)
    n_train, n_val = len(data[0]), len(data[2])
    print(f"\n== {root}  ({len(data[4])} classes, {n_train} train / {n_val} val images)")
    cache_dir = processes(args, root, work)  # filled: the runs below extract nothing new
    rows = []
    baselines = not args.baseline_max_images or n_train + n_val <= args.baseline_max_images
    if baselines:
        rows.append(("(a) tutorial: ImageDataGenerator-equivalent, forward every epoch", *recipe_tutorial(args, data)))
        print(f"\n  {rows[-1][0]}: {rows[-1][1]:.1f}s", flush=True)
        rows.append(("(b) Keras guide: image_dataset_from_directory + frozen base", *recipe_keras_guide(args, root)))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.1f}s", flush=True)
        t_cold, cold = clf_run(args, root, work / "inprocess-cache", out_dir)
        rows.append(("(c) clf cold (empty feature cache)", t_cold, cold.metrics["validation_accuracy"]))
        t_warm, warm = clf_run(args, root, work / "inprocess-cache", out_dir)
        rows.append(("(d) clf warm (feature cache filled)", t_warm, warm.metrics["validation_accuracy"]))
        print(f"\n  in this process: {'recipe':<60} {'wall s':>8} {'vs (a)':>8} {'vs (b)':>8} {'val acc':>8}")
        for name, seconds, acc in rows:
            print(f"  {'':<16}{name:<60} {seconds:>8.1f} {rows[0][1] / seconds:>7.1f}x "
                  f"{rows[1][1] / seconds:>7.1f}x {acc:>8.4f}")
        print(f"  clf cold: extraction {cold.timings['extract']:.1f}s ({cold.extraction}), head "
              f"{cold.timings['train']:.2f}s; warm: extraction {warm.timings['extract']:.1f}s ({warm.extraction})")
    else:
        print(f"\n  baselines (a), (b) skipped: {n_train + n_val} images > --baseline-max-images "
              f"{args.baseline_max_images} (pass --baseline-max-images 0 to run them)")

    seeds = [clf_run(args, root, cache_dir, out_dir, seed=seed)[1] for seed in range(args.seeds)]
    accs = [r.metrics["validation_accuracy"] for r in seeds]
    if accs:
        print(f"\n  clf val accuracy over seeds 0..{args.seeds - 1} (warm runs): {' '.join(f'{a:.4f}' for a in accs)}; "
              f"mean {np.mean(accs):.4f}, min {min(accs):.4f}; head: {describe_training(seeds[0].training['head'])}")
    reference = seeds[0] if seeds else clf_run(args, root, cache_dir, out_dir)[1]

    from_files, from_memory, decode = extraction_throughput(args, data)
    print(f"\n  extraction from JPEG files: {from_files:.1f} img/s; raw backbone forward on decoded "
          f"tensors in memory: {from_memory:.1f} img/s; ratio {from_files / from_memory:.2f} "
          f"(decoding alone, tf.data: {decode:.1f} img/s)")

    if not args.no_levers:
        levers(args, root, data, cache_dir, out_dir, reference, slow=baselines)

    batched, one = prediction_speed(args, reference.run_dir, data[2])
    print(f"\n  prediction: folder (batched, tf.data) {batched:.1f} img/s; one image at a time "
          f"(load_img + model.predict) {one:.1f} img/s; ratio {batched / one:.1f}x")


def levers(args, root, data, cache_dir, out_dir, reference, slow: bool):
    """What flip averaging, augmented copies, class weights and fine-tuning each do to
    accuracy; the slow ones (new extraction passes, live training) only on small datasets."""
    head_only = reference.metrics["validation_accuracy"]
    print(f"\n  levers (same cache; val accuracy; the default run: {head_only:.4f}):")
    if slow:
        t, flip = clf_run(args, root, cache_dir, out_dir, tta="flip")
        print(f"    --tta flip: {flip.metrics['validation_accuracy']:.4f}; {t:.1f}s, extraction "
              f"{flip.timings['extract']:.1f}s (each image and its mirror); head: "
              f"{describe_training(flip.training['head'])}")
        t, aug = clf_run(args, root, cache_dir, out_dir, augment_copies=args.augment_copies)
        print(f"    --augment-copies {args.augment_copies}: {aug.metrics['validation_accuracy']:.4f}; "
              f"{t:.1f}s, extraction {aug.timings['extract']:.1f}s for "
              f"{aug.extraction['train']['extracted']} new augmented images")
        t, kfit = clf_run(args, root, cache_dir, out_dir, solver="keras")
        print(f"    --solver keras (Adam, {args.epochs} epochs, best epoch kept): "
              f"{kfit.metrics['validation_accuracy']:.4f}; {describe_training(kfit.training['head'])}")
    cw = class_weight_effect(args, root, data, cache_dir, out_dir)
    print(f"    imbalanced train subset (largest class kept, others cut to 1/5), val acc / mean "
          f"per-class recall: --class-weight none {cw['none'][0]:.4f} / {cw['none'][1]:.4f}, "
          f"balanced {cw['balanced'][0]:.4f} / {cw['balanced'][1]:.4f}")
    if not slow:
        print("    --tta flip, --augment-copies and fine-tuning skipped (dataset over --baseline-max-images)")
        return
    for schedule in ("cosine", "constant"):
        t, ft = clf_run(args, root, cache_dir, out_dir, fine_tune_layers=args.fine_tune_layers,
                        fine_tune_epochs=args.fine_tune_epochs, schedule=schedule)
        info = ft.training.get("fine_tune", {})
        print(f"    --fine-tune-layers {args.fine_tune_layers} --fine-tune-epochs {args.fine_tune_epochs} "
              f"--schedule {schedule}: {ft.metrics['validation_accuracy']:.4f}; {t:.1f}s, of which fine-tuning "
              f"{ft.timings.get('fine_tune', 0):.1f}s; kept epoch {info.get('kept_epoch')} ({info.get('kept')})")


if __name__ == "__main__":
    sys.exit(main())
