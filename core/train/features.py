"""Feature caching: a frozen backbone gives the same features every epoch, so each image goes
through it once; augmentation becomes ``K`` copies extracted once each (``--augment-copies``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from clf.data.augmentation import augmentation_layers, augmentation_spec
from clf.errors import DataError
from clf.files import file_sha256
from clf.train.feature_cache import FeatureCache
from clf.infer.forward import forward_fn

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from clf.data.images import DatasetBundle
    from clf.data.preprocessing import Standardize
    from clf.train.model import Classifier
    from clf.train.sharding import Workers


@dataclass
class SplitFeatures:
    features: np.ndarray  # float32 [n * (1 + copies), features]: the clean copy first
    labels: np.ndarray  # int32, aligned with features
    extracted: int = 0  # images that went through the backbone in this run
    cached: int = 0  # images served from the disk cache
    seconds: float = 0.0
    by_worker: list[int] | None = None  # images each worker extracted (multi-worker runs)


def make_extractor(classifier: Classifier, image_size: Sequence[int]) -> keras.Model:
    """Raw RGB 0-255 images -> pooled features: the exported model minus its head
    (including its ``tta`` flip-averaging)."""
    import keras

    from clf.data.preprocessing import Preprocess
    from clf.train.model import backbone_features

    inputs = keras.Input(shape=(image_size[0], image_size[1], 3), name="image")
    x = Preprocess(classifier.preprocess, name="preprocess")(inputs)
    return keras.Model(inputs, backbone_features(classifier.backbone, x, classifier.tta), name="feature_extractor")


def extract(extractor: keras.Model, dataset: tf.data.Dataset, batch_size: int, augment: keras.Layer | None = None,
            progress: Callable[[int], None] | None = None,
            forward: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of an unbatched ``(image, label)`` dataset, in its order;
    prefetched decoding overlaps the forward pass. ``forward``: the backbone over replicas
    (clf.train.sharding) or in another runtime (clf.infer.choice); default TensorFlow."""
    import tensorflow as tf

    ds = dataset.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    forward = forward or forward_fn(extractor)
    features, labels = [], []
    for x, y in ds:
        features.append(np.asarray(forward(tf.cast(x, tf.float32).numpy())))
        labels.append(y.numpy())
        if progress:
            progress(len(labels[-1]))
    if not features:
        width = int(extractor.output_shape[-1])
        return np.zeros((0, width), np.float32), np.zeros((0,), np.int32)
    return np.concatenate(features).astype(np.float32, copy=False), np.concatenate(labels).astype(np.int32)


# Photos decoded in full as clf predict decodes them, through TensorFlow: the test vectors' inputs.
PHOTO_VARIANT = "photo-tensorflow"


def photo_features(extractor: keras.Model, files: Sequence[str], image_size: Sequence[int],
                   cache: FeatureCache | None) -> np.ndarray:
    """Features of ``files`` decoded in full (``clf.infer.decode.Decoder``, as ``clf predict``),
    through TensorFlow; cached under ``PHOTO_VARIANT``, so a warm run traces no backbone for them."""
    from clf.infer.decode import Decoder

    hashes = [file_sha256(f) for f in files]
    hits, misses = cache.lookup(PHOTO_VARIANT, hashes) if cache is not None else ({}, list(range(len(files))))
    table = dict(hits)
    if misses:
        got = np.asarray(forward_fn(extractor)(Decoder(image_size).batch([files[i] for i in misses])), np.float32)
        if cache is not None:
            cache.store(PHOTO_VARIANT, [hashes[i] for i in misses], got)
        table.update(zip(misses, got))
    return np.stack([table[i] for i in range(len(files))]).astype(np.float32)


def variants(copies: int, seed: int, tta: str = "none") -> list[tuple[str, int | None]]:
    """``(cache variant name, augmentation seed or None)``: the clean copy, then K augmented;
    ``tta`` is a prefix, not a suffix, since the cache globs ``<variant>-*.npz``."""
    prefix = "" if tta == "none" else f"{tta}-"
    spec = augmentation_spec(seed) if copies else ""
    return [(f"{prefix}clean", None)] + [(f"{prefix}aug-{spec}-s{seed}-c{k}", seed + 1000 * k)
                                         for k in range(1, copies + 1)]


def split_features(bundle: DatasetBundle, split: str, extractor: keras.Model, batch_size: int, *, copies: int = 0, seed: int = 0,
                   cache: FeatureCache | None = None, tta: str = "none",
                   progress: Callable[[int], None] | None = None,
                   forward: Callable[[np.ndarray], np.ndarray] | None = None,
                   workers: Workers | None = None) -> SplitFeatures | None:
    """The features of one split of a loader bundle. With a file list, ``cache`` extracts only
    its misses (the whole split if the loader cannot build a subset) and ``workers`` split the
    images and exchange features."""
    dataset = {"train": bundle.train, "validation": bundle.validation, "test": bundle.test}[split]
    if dataset is None:
        return None
    t0 = time.perf_counter()
    files = bundle.splits[split] if split in bundle.splits else None
    use_cache = cache is not None and files is not None and len(files) > 0
    shared = workers is not None and files is not None and len(files) > 0 and bundle.make_dataset is not None
    hashes = [file_sha256(f) for f in files.files] if files is not None and (use_cache or shared) else []
    out_features, out_labels, extracted, cached = [], [], 0, 0
    by_worker = [0] * workers.count if shared and workers is not None else None
    for variant, aug_seed in variants(copies if split == "train" else 0, seed, tta):
        augment = augmentation_layers(aug_seed) if aug_seed is not None else None

        def extract_files(order: list[int]) -> np.ndarray:
            """Features of ``files[order]`` (``order`` is every file if no subset can be built)."""
            assert files is not None
            if bundle.make_dataset is not None:
                subset = bundle.make_dataset([files.files[i] for i in order], [files.labels[i] for i in order])
            else:
                subset = dataset
            f, _ = extract(extractor, subset, batch_size, augment, progress, forward)
            if len(f) != len(order):
                raise DataError(
                    f"The {split} dataset yielded {len(f)} images but its file list has "
                    f"{len(order)}; expected one image per listed file. Fix the loader's "
                    f"file list or pass --no-cache."
                )
            return f

        if not (shared or use_cache):
            f, y = extract(extractor, dataset, batch_size, augment, progress, forward)
            out_features.append(f)
            out_labels.append(y)
            extracted += len(y)
            continue
        assert files is not None
        if shared:
            assert workers is not None and by_worker is not None
            width = int(extractor.output_shape[-1])
            f, counts, hit = workers.exchange(split, variant, hashes, cache, width, extract_files, progress)
            by_worker = [a + b for a, b in zip(by_worker, counts)]
            extracted, cached = extracted + sum(counts), cached + hit
        else:
            assert cache is not None
            hits, misses = cache.lookup(variant, hashes)
            table = dict(hits)
            if misses:
                order = misses if bundle.make_dataset is not None else list(range(len(files)))
                got = extract_files(order)
                cache.store(variant, [hashes[i] for i in order], got)
                table.update(zip(order, got))
                extracted += len(order)
            cached += len(hits)
            if progress and hits:
                progress(len(hits))
            f = np.stack([table[i] for i in range(len(files))]).astype(np.float32)
        out_features.append(f)
        out_labels.append(np.asarray(files.labels, np.int32))
    return SplitFeatures(np.concatenate(out_features), np.concatenate(out_labels), extracted, cached,
                         time.perf_counter() - t0, by_worker)


def make_standardizer(train_features: np.ndarray) -> Standardize:
    """A ``Standardize`` layer dividing features by their overall training RMS (backbones differ
    wildly in scale, which can leave one Adam learning rate stuck at chance). No per-feature
    centring or scaling: both amplify tiny differences, costing accuracy and int8 agreement."""
    from clf.data.preprocessing import Standardize

    rms = float(np.sqrt(np.mean(np.square(train_features, dtype=np.float64)))) if train_features.size else 0.0
    layer = Standardize(name="standardize")
    layer.build((None, train_features.shape[-1]))
    layer.mean.assign(np.zeros(train_features.shape[-1], np.float32))
    layer.std.assign(np.full(train_features.shape[-1], rms if rms > 0 else 1.0, np.float32))
    return layer
