"""Multi-label runs (a labels file with several labels a photo, ``DatasetBundle.task``): what
changes from a single-label run. The head is a sigmoid a class (the built-in ``sigmoid``), solved
as one-vs-rest logistic regression with per-class thresholds chosen out of fold
(clf.train.linear_head) or fitted by Keras with binary cross-entropy; evaluation reports mAP and
F1 at the thresholds (clf.report.multilabel); labels.json records the task and the thresholds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from clf.errors import ConfigError

if TYPE_CHECKING:
    from clf.config import RunConfig
    from clf.data.images import DatasetBundle
    from clf.data.loading import LoadedData
    from clf.events import Observer
    from clf.host.registry import Backbone, Head
    from clf.train.extraction import Extracted
    from clf.train.finish import Evaluated
    from clf.train.fit import Fitted, Trainable
    from clf.train.setup import Setup

BUILTIN_HEADS = ("clf.plugins.heads",)


def check(config: RunConfig, bundle: DatasetBundle, backbone: Backbone) -> None:
    """What a multi-label run cannot do yet, refused before any slow work."""
    if not bundle.multilabel:
        return
    refused = []
    if config.unknown not in ("auto", "off"):
        refused.append(f"--unknown {config.unknown} (the known score is calibrated for one class a photo; "
                       f"--unknown auto records none for multi-label data)")
    if config.folds:
        refused.append(f"--folds {config.folds} (K-fold scores are single-label)")
    if config.fine_tune_layers:
        refused.append(f"--fine-tune-layers {config.fine_tune_layers} (fine-tuning trains with single labels)")
    if backbone.trainable:
        refused.append(f"backbone {backbone.name!r} trained from scratch (multi-label heads train on cached features)")
    if refused:
        raise ConfigError(
            f"--data {config.data!r} is multi-label data (--task {config.task}), which does not support "
            f"{'; '.join(refused)}. Drop {'it' if len(refused) == 1 else 'them'}, or pass --task single with "
            f"one label a row.")


def head_for(setup: Setup) -> Head:
    """The sigmoid head: the built-in one in place of the default softmax (its options kept); a
    plugin's head is taken as it is, and must end in a sigmoid a class."""
    head = setup.head
    if head.plugin in BUILTIN_HEADS and head.name == "softmax":
        return setup.host.heads.get("sigmoid")
    return head


def split_targets(bundle: DatasetBundle, split: str, rows: int) -> np.ndarray:
    """The 0/1 targets ``[rows, classes]`` of one split's feature rows: the files' label sets,
    repeated for each augmented copy (the features' order: clean copy first)."""
    y = bundle.splits[split].multi_hot(bundle.num_classes)
    copies = rows // max(len(y), 1)
    if copies * len(y) != rows:
        raise ValueError(f"{split}: {rows} feature rows for {len(y)} files")
    return np.tile(y, (copies, 1))


def thresholds(fitted: Fitted, k: int) -> list[float]:
    """The per-class thresholds the head phase chose (0.5 where it chose none)."""
    return [float(t) for t in fitted.info.get("thresholds", [0.5] * k)]


def evaluate(setup: Setup, data: LoadedData, trainable: Trainable, extracted: Extracted,
             cuts: list[float], observer: Observer) -> Evaluated:
    """Validation and test reports on the cached features (the exported model's sigmoid
    scores): clf.report.multilabel's report per split, its headline numbers in ``metrics``."""
    from clf.infer.forward import predict
    from clf.report.multilabel import multilabel_report
    from clf.train.finish import Evaluated

    bundle = data.bundle
    todo = [split for split in ("validation", "test") if extracted[split] is not None]
    observer.phase_start("evaluate", total=sum(len(bundle.splits[s]) for s in todo) or None, unit="image")
    result = Evaluated()
    k = bundle.num_classes
    for split in todo:
        feats = extracted[split]
        assert feats is not None
        scores = predict(trainable.classifier.outputs_head, feats.features)[:, :k]
        y = split_targets(bundle, split, len(feats.labels))
        report = multilabel_report(y, scores, cuts, bundle.class_names)
        result.reports[split] = report
        result.metrics.update({f"{split}_loss": report["loss"], f"{split}_map": report["map"],
                               f"{split}_macro_f1": report["macro_f1"], f"{split}_micro_f1": report["micro_f1"],
                               f"{split}_exact_match": report["exact_match"]})
        result.multilabel_scores[split] = (y, scores)
    observer.phase_end("evaluate", metrics=result.metrics, reports=result.reports)
    return result


def metadata(cuts: list[float]) -> dict[str, Any]:
    """labels.json's multi-label fields: the task and each class's threshold (read back by
    clf.artifacts.labels.decide)."""
    return {"task": "multilabel", "thresholds": [round(float(t), 6) for t in cuts]}
