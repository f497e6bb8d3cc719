"""The run's features for every training and validation image, as training computed them.

The run cached each file's pooled backbone features keyed by the file's content and by the
extractor (backbone, a fingerprint of its weights, input size, crop, preprocessing, loader).
The exported model's backbone has the very weights the run extracted with, so the same key
finds the same entries and nothing goes through the backbone again. Files the cache lacks
(``--no-cache`` runs, a cleared cache, a fine-tuned backbone whose weights changed) are
extracted through the same path the engine uses, and stored for next time.
"""

from __future__ import annotations

import time

from clf.data.images import DatasetBundle, files_dataset
from clf.events import Observer
from clf.inspect.saved_run import RunModel, SavedRun
from clf.train.features import SplitFeatures


def run_features(run: SavedRun, parts: RunModel, host, *, cache: bool = True,
                 observer: Observer | None = None) -> dict[str, SplitFeatures]:
    """``{split: SplitFeatures}`` for the run's training and validation files, in manifest order."""
    from clf.train.extraction import feature_cache_for
    from clf.train.features import make_extractor, split_features
    from clf.train.model import Classifier

    observer = observer or Observer()
    size = run.image_size
    backbone = host.backbones.get(run.labels.get("backbone", run.config.backbone))
    store = feature_cache_for(run.config.replace(cache=cache), backbone, parts.backbone, size)

    def dataset(files, labels):
        return files_dataset(files, labels, size)

    train, validation = (dataset(s.files, s.labels) if s else None
                         for s in (run.splits.get("train"), run.splits.get("validation")))
    bundle = DatasetBundle(run.class_names, train, validation, splits=run.splits, make_dataset=dataset)
    observer.phase_start("extract", total=sum(len(s) for s in run.splits.values()), unit="image")
    t0 = time.perf_counter()
    extractor = make_extractor(Classifier(None, parts.backbone, None, parts.preprocess), size)
    out = {name: split_features(bundle, name, extractor, run.config.batch_size, cache=store,
                                progress=lambda n: observer.phase_advance("extract", n))
           for name in run.splits}
    observer.phase_end("extract", seconds=time.perf_counter() - t0,
                       counts={n: {"extracted": f.extracted, "cached": f.cached} for n, f in out.items()},
                       cache_dir=str(store.dir) if store else None)
    return out
