"""The last three phases of a run: evaluate the trained model, export and verify it, and
write the run record (metrics, history, plots, manifest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clf.artifacts.exporting import export_all
from clf.artifacts.labels import make_metadata
from clf.events import Observer
from clf.report import runrecord
from clf.report.evaluation import predict_dataset
from clf.report.metrics import cross_entropy, evaluation_report
from clf.infer.forward import batch_fn, predict as forward_predict
from clf.train.features import photo_features

if TYPE_CHECKING:
    import numpy as np

    from clf.data.loading import LoadedData
    from clf.report.history import RunRecorder
    from clf.train.distribute import Distribution
    from clf.train.extraction import Extracted
    from clf.train.fit import Trainable
    from clf.train.setup import Setup
    from clf.train.unknown import KnownFit


@dataclass
class Evaluated:
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. validation_accuracy
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> evaluation report
    live: bool = False  # evaluated on images, not cached features
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # split -> (labels, probs)
    # multi-label: split -> (0/1 targets, sigmoid scores), for the precision-recall curves
    multilabel_scores: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def evaluate_run(setup: Setup, data: LoadedData, trainable: Trainable, extracted: Extracted | None,
                 dist: Distribution, *, batch_size: int, observer: Observer) -> Evaluated:
    """Validation and test reports: on cached features (what the exported model predicts,
    tested, and far faster), or on images once the backbone has changed (fine-tuned or
    trained from scratch)."""
    import tensorflow as tf

    config, bundle = setup.config, data.bundle
    live = extracted is None or bool(config.fine_tune_layers)
    sources = {"validation": (trainable.live_validation, extracted["validation"] if extracted else None),
               "test": (bundle.test, extracted["test"] if extracted else None)}
    todo = {name: (ds, f) for name, (ds, f) in sources.items() if (ds if live else f) is not None}
    total = sum(len(bundle.splits[n]) for n in todo if n in bundle.splits)
    observer.phase_start("evaluate", total=total or None, unit="image")
    result = Evaluated(live=live)
    k = len(bundle.class_names)
    # The model's outputs (then the known score) cut to the classes: export's reference reuses the trace.
    outputs = batch_fn(trainable.classifier.model if live else trainable.classifier.outputs_head)
    model = lambda batch: outputs(batch)[:, :k]  # noqa: E731
    for split, (ds, feats) in todo.items():
        if live:
            if split == "test":
                ds = dist.batch(ds, len(bundle.splits.get("test", [])) or None, "test",
                                size=batch_size).prefetch(tf.data.AUTOTUNE)
            batches = ds
        else:
            assert feats is not None
            batches = tf.data.Dataset.from_tensor_slices((feats.features, feats.labels)).batch(256)
        y, p = predict_dataset(model, batches, len(bundle.class_names), observer)
        report = evaluation_report(y, p, bundle.class_names, loss=cross_entropy(y, p))
        result.predictions[split] = (y, p)  # per image, for predictions.json (clf compare)
        result.reports[split] = report
        result.metrics[f"{split}_loss"] = report["loss"]
        result.metrics[f"{split}_accuracy"] = report["accuracy"]
    observer.phase_end("evaluate", metrics=result.metrics, reports=result.reports)
    return result


@dataclass
class Exported:
    metadata: dict[str, Any]  # what labels.json holds
    artifacts: dict[str, list[Path]]  # exporter -> files written
    verification: Any = None  # clf.artifacts.verify.VerificationReport, None with --no-verify


def export_run(setup: Setup, data: LoadedData, trainable: Trainable, extracted: Extracted | None,
               evaluated: Evaluated, dist: Distribution, *, run_dir: Path,
               observer: Observer, known: KnownFit | None = None,
               extra_metadata: dict[str, Any] | None = None) -> Exported:
    """``extra_metadata``: more labels.json fields (multi-label: the task and thresholds)."""
    config, backbone = setup.config, setup.backbone
    metadata = make_metadata(data.bundle.class_names, backbone.name, setup.image_size, backbone.preprocess,
                             weights=config.weights, precision=dist.precision,
                             **({"unknown": known.record} if known is not None else {}), **(extra_metadata or {}))

    def cached_probs(split: str) -> np.ndarray | None:
        # The head on cached features is the exported model's output (train's order may differ).
        f = extracted[split] if extracted is not None and split in ("validation", "test") else None
        return None if evaluated.live or f is None else forward_predict(trainable.classifier.outputs_head, f.features)

    def photo_probs(files: list[str]) -> np.ndarray | None:
        # Test vectors: the head on the photos' cached full-decode features, no backbone trace when warm.
        if evaluated.live or extracted is None or extracted.extractor is None:
            return None
        features = photo_features(extracted.extractor, files, setup.image_size, extracted.cache)
        return forward_predict(trainable.classifier.outputs_head, features)

    model = trainable.classifier.model
    artifacts, verification = export_all(model, run_dir, metadata, setup.exporters, config, data.bundle,
                                         observer, reference=batch_fn(model),
                                         reference_probs=cached_probs, photo_probs=photo_probs)
    return Exported(metadata, artifacts, verification)


def record_run(setup: Setup, data: LoadedData, evaluated: Evaluated, exported: Exported, recorder: RunRecorder, *,
               extraction: dict, training: dict, started: datetime, run_dir: Path,
               observer: Observer, runtime: dict | None = None, known: KnownFit | None = None,
               cross_validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """metrics.json, confusion matrix, history.csv, training curves, the known score's histogram
    and manifest.json (``runtime``: what ran the backbone and its agreement with TensorFlow;
    ``known``: the unknown phase's calibration, None when off; ``cross_validation``: the --folds
    report, in metrics.json)."""
    config, bundle = setup.config, data.bundle
    observer.phase_start("record")
    primary = next((split for split in ("test", "validation") if split in evaluated.reports), None)
    if known is not None and "validation_accepted" in known.record:
        # The share of validation images the known score accepts joins the run's metrics.
        evaluated.metrics["validation_known_accepted"] = known.record["validation_accepted"]
    extra: dict[str, Any] = {k: v for k, v in evaluated.metrics.items() if k == "validation_known_accepted"}
    if cross_validation:
        extra["cross_validation"] = cross_validation
    files = (runrecord.write_evaluation(run_dir, evaluated.reports, primary, extra)
             + runrecord.write_history(run_dir, recorder.epochs))
    if primary is not None and primary in evaluated.multilabel_scores:
        files.append(runrecord.write_pr_curves(run_dir, *evaluated.multilabel_scores[primary], bundle.class_names,
                                               evaluated.reports[primary], primary))
    if known is not None:
        files.append(runrecord.write_unknown_scores(run_dir, known.record, known.oof, known.validation))
    manifest = runrecord.build_manifest(
        config=config, class_names=bundle.class_names, counts=data.counts, splits=bundle.splits,
        seconds={**recorder.seconds, "total": (datetime.now() - started).total_seconds()},
        backbone=setup.backbone.name, image_size=setup.image_size, started=started,
        extra={"artifacts": exported.metadata["artifacts"], "metrics": evaluated.metrics, "evaluated_on": primary,
               "verification": exported.metadata.get("verification"), "extraction": extraction,
               "runtime": runtime, "training": training, "unknown": exported.metadata.get("unknown"),
               **({"quantization_variant": exported.metadata["quantization_variant"]}
                  if "quantization_variant" in exported.metadata else {})},
    )
    files += runrecord.write_predictions(run_dir, evaluated.predictions, bundle.splits, bundle.class_names,
                                         config.data)
    files.append(runrecord.write_json(run_dir / "manifest.json", manifest))
    observer.phase_end("record", run_dir=run_dir, files=files, reports=evaluated.reports, primary=primary)
    return manifest
