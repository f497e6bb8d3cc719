"""The extract phase: each image through the frozen backbone once (K+1 times with
augmented copies), served from or stored in the on-disk feature cache.

Each worker of a multi-worker run extracts every image itself, on its own device (no
collective step); only the chief writes the disk cache, the others keep features in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from clf.config import RunConfig
from clf.events import Observer
from clf.train.features import SplitFeatures, make_extractor, split_features
from clf.train.model import Classifier

SPLITS = ("train", "validation", "test")


@dataclass
class Extracted:
    splits: dict[str, SplitFeatures | None]  # train / validation / test
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> extracted / cached
    seconds: float = 0.0

    def __getitem__(self, split: str) -> SplitFeatures | None:
        return self.splits.get(split)


def feature_cache_for(config: RunConfig, backbone, base, image_size):
    """The on-disk feature cache for this extractor, or None with ``--no-cache``."""
    if not config.cache:
        return None
    from clf.train.feature_cache import FeatureCache, default_cache_dir, weights_fingerprint

    return FeatureCache(config.cache_dir or default_cache_dir(), {
        "backbone": backbone.name, "weights": weights_fingerprint(base),
        "image_size": list(image_size), "center_crop": image_size.center_crop,
        "preprocess": backbone.preprocess, "loader": config.loader,
    })


def extract_features(setup, data, base, *, chief: bool, batch_size: int, observer: Observer) -> Extracted:
    config, bundle = setup.config, data.bundle
    copies = config.augment_copies if config.augment else 0
    total = sum(len(s) for s in bundle.splits.values()) + data.n_train * config.augment_copies
    observer.phase_start("extract", total=total or None, unit="image")
    t0 = time.perf_counter()
    cache = feature_cache_for(config, setup.backbone, base, setup.image_size) if chief else None
    if cache is not None and not bundle.splits:
        observer.note(f"Loader {config.loader!r} lists no files, so features are not cached on disk.")
    extractor = make_extractor(Classifier(None, base, None, setup.backbone.preprocess, config.tta), setup.image_size)
    splits = {name: split_features(bundle, name, extractor, batch_size, seed=config.seed, copies=copies,
                                   cache=cache, tta=config.tta, progress=lambda n: observer.phase_advance("extract", n))
              for name in SPLITS}
    counts = {n: {"extracted": f.extracted, "cached": f.cached} for n, f in splits.items() if f}
    seconds = time.perf_counter() - t0
    observer.phase_end("extract", seconds=seconds, counts=counts, cache_dir=str(cache.dir) if cache else None)
    if config.augment_copies and not config.augment:
        observer.note("--augment-copies is ignored with --no-augment: training on clean features only.")
    return Extracted(splits, counts, seconds)
