"""The extract phase: each image through the frozen backbone once (K+1 times with augmented
copies), via the chief's on-disk feature cache, shared by replicas and workers
(clf.train.sharding), in the runtime ``--runtime`` picks (clf.infer.choice). The runtime is
part of the cache key, so features stay bit-reproducible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, TYPE_CHECKING

from clf.config import RunConfig
from clf.events import Observer
from clf.infer.store import extractor_parts, runtime_store
from clf.train import sharding
from clf.train.features import SplitFeatures, make_extractor, split_features
from clf.train.model import Classifier
from clf.train.feature_cache import FeatureCache, default_cache_dir
from clf.infer.choice import BackboneRuntime

if TYPE_CHECKING:
    from clf.data.images import ImageSize
    from clf.data.loading import LoadedData
    from clf.train.distribute import Distribution
    from clf.train.setup import Setup

SPLITS = ("train", "validation", "test")


@dataclass
class Extracted:
    splits: dict[str, SplitFeatures | None]  # train / validation / test
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> extracted / cached
    seconds: float = 0.0
    runtime: dict[str, Any] = field(default_factory=dict)  # BackboneRuntime.record(): name, check, notes
    cache: FeatureCache | None = None  # the on-disk cache it read (None: --no-cache, or not the chief)
    extractor: Any = None  # the TensorFlow extractor (images -> features)

    def __getitem__(self, split: str) -> SplitFeatures | None:
        return self.splits.get(split)


def feature_cache_for(config: RunConfig, parts: dict[str, Any], image_size: ImageSize, runtime: str,
                      note: Callable[[str], None] | None = None) -> FeatureCache | None:
    """The on-disk feature cache for this extractor in ``runtime``, or None with ``--no-cache``."""
    if not config.cache:
        return None
    return FeatureCache(config.cache_dir or default_cache_dir(), {
        **parts, "center_crop": image_size.center_crop, "loader": config.loader, "runtime": runtime}, note=note)


def keep_tensorflow(requested: str, dist: Distribution) -> str | None:
    """Why TensorFlow must run the backbone here, or None when another runtime may."""
    if dist.replicas > 1:
        return f"{dist.replicas} replicas (strategy {dist.name})"
    if dist.precision != "float32":
        return f"precision {dist.precision}"
    if requested == "auto" and any("GPU" in d.upper() or "TPU" in d.upper() for d in dist.devices):
        return "an accelerator"
    return None


# auto converts only from this many images: converting costs about as much as TensorFlow on
# hundreds of images (see benchmarks/extract.py). A stored conversion is used for any size.
AUTO_MIN_IMAGES = 200


def choose_runtime(config: RunConfig, data: LoadedData, extractor: Any, parts: dict[str, Any],
                   dist: Distribution, batch_size: int, images: int) -> BackboneRuntime:
    """The backbone's runtime, decided before the cache is read (its name is in the key),
    from a stored check or the first batch."""
    store = runtime_store(config.cache_dir, parts, enabled=config.cache)
    few = config.runtime == "auto" and 0 < images < AUTO_MIN_IMAGES
    runtime = BackboneRuntime(config.runtime, extractor, store, keep_tensorflow=keep_tensorflow(config.runtime, dist),
                              no_conversion=f"{images} images: converting pays from {AUTO_MIN_IMAGES}" if few else None)
    if runtime.name is None:
        bundle = data.bundle
        first = next((ds for ds in (bundle.train, bundle.validation, bundle.test) if ds is not None), None)
        for sample, _ in first.take(batch_size).batch(batch_size) if first is not None else ():
            runtime.decide(sample.numpy())
    return runtime


def extract_features(setup: Setup, data: LoadedData, base: Any, dist: Distribution, *, batch_size: int,
                     observer: Observer) -> Extracted:
    config, bundle = setup.config, data.bundle
    copies = config.augment_copies if config.augment else 0
    total = sum(len(s) for s in bundle.splits.values()) + data.n_train * config.augment_copies
    observer.phase_start("extract", total=total or None, unit="image")
    t0 = time.perf_counter()
    extractor = make_extractor(Classifier(None, base, None, setup.backbone.preprocess, config.tta), setup.image_size)
    parts = extractor_parts(setup.backbone.name, base, setup.image_size, setup.backbone.preprocess, config.tta)
    runtime = choose_runtime(config, data, extractor, parts, dist, batch_size, total)
    for note in runtime.notes:
        observer.note(note)
    cache = (feature_cache_for(config, parts, setup.image_size, runtime.name or "tensorflow", observer.note)
             if dist.chief else None)
    if cache is not None and not bundle.splits:
        observer.note(f"Loader {config.loader!r} lists no files, so features are not cached on disk.")
    # Replicas keep TensorFlow (keep_tensorflow), so the two forwards never combine.
    replica = sharding.replica_forward(dist, extractor)
    forward = replica or runtime.run
    workers = sharding.workers_for(dist)
    if workers is not None and not (bundle.splits and bundle.make_dataset):
        observer.note(f"Loader {config.loader!r} lists no files it can load in parts, so every worker extracts "
                      f"every image itself.")
    splits, counts = {}, {}
    for name in SPLITS:
        found = splits[name] = split_features(bundle, name, extractor, batch_size, seed=config.seed, copies=copies,
                                      cache=cache, tta=config.tta, progress=lambda n: observer.phase_advance("extract", n),
                                      forward=forward, workers=workers)
        if found:
            counts[name] = sharding.record(found, replica)
    seconds = time.perf_counter() - t0
    observer.phase_end("extract", seconds=seconds, counts=counts, cache_dir=str(cache.dir) if cache else None,
                       runtime=runtime.name, worker=workers.rank if workers is not None else None)
    if config.augment_copies and not config.augment:
        observer.note("--augment-copies is ignored with --no-augment: training on clean features only.")
    return Extracted(splits, counts, seconds, runtime.record(), cache, extractor)
