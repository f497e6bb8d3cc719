"""The run's features for every training and validation image, as training computed them.

The exported backbone has the very weights the run extracted with and the run record names
its runtime, so the same cache key finds the run's features and nothing is extracted again.
Files the cache lacks (``--no-cache`` runs, a cleared cache, a fine-tuned backbone) are
extracted as the engine does, in the run's runtime, and stored for next time.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable, TYPE_CHECKING

from clf.data.images import DatasetBundle, files_dataset
from clf.events import Observer
from clf.inspect.saved_run import RunModel, SavedRun
from clf.train.features import make_extractor, split_features, SplitFeatures
from clf.infer.store import extractor_parts, runtime_store
from clf.infer.choice import BackboneRuntime

if TYPE_CHECKING:
    from clf.host.manager import PluginHost


def run_features(run: SavedRun, parts: RunModel, host: PluginHost, *, cache: bool = True,
                 observer: Observer | None = None) -> dict[str, SplitFeatures]:
    """``{split: SplitFeatures}`` for the run's training and validation files, in manifest order."""
    from clf.train.extraction import feature_cache_for
    from clf.train.model import Classifier

    observer = observer or Observer()
    size = run.image_size
    config = run.config.replace(cache=cache)
    backbone = host.backbones.get(run.labels.get("backbone", config.backbone))
    extractor = make_extractor(Classifier(None, parts.backbone, None, parts.preprocess, config.tta), size)
    key = extractor_parts(backbone.name, parts.backbone, size, backbone.preprocess, config.tta)
    runtime = ((run.manifest.get("runtime") or {}).get("name") or "tensorflow") if cache else "tensorflow"
    store = feature_cache_for(config, key, size, runtime, observer.note)
    # Files the cache lacks go through the run's runtime (opened on the first miss).
    forward = (BackboneRuntime(runtime, extractor, runtime_store(config.cache_dir, key)).run
               if runtime != "tensorflow" else None)
    dataset = partial(files_dataset, image_size=size)
    train, validation = (_Lazy(dataset, s.files, s.labels) if s else None
                         for s in (run.splits.get("train"), run.splits.get("validation")))
    bundle = DatasetBundle(run.class_names, train, validation, splits=run.splits, make_dataset=dataset)
    observer.phase_start("extract", total=sum(len(s) for s in run.splits.values()), unit="image")
    t0 = time.perf_counter()
    found = {name: split_features(bundle, name, extractor, config.batch_size, cache=store, tta=config.tta,
                                progress=lambda n: observer.phase_advance("extract", n), forward=forward)
           for name in run.splits}
    out = {name: f for name, f in found.items() if f is not None}  # each inspected split has its dataset
    observer.phase_end("extract", seconds=time.perf_counter() - t0,
                       counts={n: {"extracted": f.extracted, "cached": f.cached} for n, f in out.items()},
                       cache_dir=str(store.dir) if store else None)
    return out


class _Lazy:
    """A split's dataset, built on first use: a warm inspection reads files only through
    ``make_dataset`` and so never traces the slow image decoder."""

    def __init__(self, make: Callable[..., Any], *args: Any) -> None:
        self._make, self._args, self._dataset = make, args, None

    def __getattr__(self, name: str) -> Any:
        if self._dataset is None:
            self._dataset = self._make(*self._args)
        return getattr(self._dataset, name)
