"""``run(config)``: one training run as a short list of phases. Never prints (clf.api's
``progress=True`` shows the events); raises ClfError.

Each phase returns a small dataclass; the observer sees a ``phase_start``/``phase_end`` pair::

    resolve          train/setup.py      components, image size, export options (no slow work)
    distribution     train/distribute.py tf.distribute strategy + precision (before TF runs)
    load_data        data/loading.py     doctor -> loader -> --classes check     [dry run stops here]
    build_backbone   train/model.py      the pretrained (or random) backbone, frozen
    extract_features train/extraction.py each image through the backbone once (disk cache)
    assemble         train/fit.py        head on the features, joined to the backbone
    fit_head         train/fit.py        head solved (train/linear_head.py) or Keras fit (train/optim.py)
    fine_tune        train/fit.py        optional: top layers unfrozen, live images
    unknown          train/unknown.py    known-photo score calibrated on the training images, a column more
    cross_validate   train/crossval.py   optional (--folds K): K-fold scores with intervals, cached features
    evaluate_run     train/finish.py     validation/test reports
    export_run       train/finish.py     every exporter, round-trip verification, labels.json
    record_run       train/finish.py     metrics, history, plots, manifest.json
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clf.config import RunConfig
from clf.errors import ConfigError
from clf.data import guardrails
from clf.data.loading import load_data
from clf.events import Observer
from clf.host.manager import PluginHost, get_host
from clf.report import runrecord
from clf.report.history import RunRecorder, TeeObserver
from clf.train import checkpoint, multilabel
from clf.train.distribute import distribution, precision_scope
from clf.train.extraction import extract_features
from clf.train.finish import evaluate_run, export_run, record_run
from clf.train.fit import assemble, fine_tune, fit_head
from clf.train.model import Classifier, build_backbone
from clf.train.setup import Setup, open_run_dir, resolve
from clf.train.unknown import fit_unknown
from clf.infer.decode import Decoder
from clf.infer.forward import batch_fn, in_batches
from clf.report.summary import text, html

if TYPE_CHECKING:
    import keras

    from clf.data.loading import LoadedData
    from clf.train.distribute import Distribution
    from clf.train.extraction import Extracted
    from clf.train.fit import Trainable


@dataclass
class RunResult:
    config: RunConfig
    run_dir: Path
    class_names: list[str]
    history: dict[str, list[float]]
    metrics: dict[str, float]
    artifacts: dict[str, list[Path]]
    classifier: Classifier = field(repr=False)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> evaluation_report
    manifest: dict[str, Any] = field(default_factory=dict)
    verification: Any = None  # clf.artifacts.verify.VerificationReport, None with verify=False
    timings: dict[str, float] = field(default_factory=dict)
    extraction: dict[str, dict[str, int]] = field(default_factory=dict)
    # A non-chief worker writes no artifacts (its run_dir was temporary).
    distribution: dict[str, Any] = field(default_factory=dict)
    # {"head": {"solver": ...}, "fine_tune": {...}}, as in manifest.json's "training".
    training: dict[str, dict[str, Any]] = field(default_factory=dict)
    # --folds K: metrics.json's "cross_validation" (clf.train.crossval.fold_report); empty without.
    cross_validation: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> keras.Model:
        return self.classifier.model

    def predict(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Probabilities ``[n, classes]`` (columns in ``class_names`` order), decoded and run
        as ``clf predict`` does (``clf.infer.decode.Decoder``, ``clf.infer.forward``). Takes a
        path, a folder, a list of paths, an ``[h, w, 3]`` array, a batch, or a list of arrays
        or PIL images."""
        return self.outputs(images, batch_size)[:, :len(self.class_names)]

    def known_scores(self, images: Any, batch_size: int = 32) -> np.ndarray | None:
        """The known score per image ``[n]`` (known at >= 0.5: ``manifest["unknown"]``), as
        every export computes it; None when the run has no unknown-photo score."""
        outputs = self.outputs(images, batch_size)
        return outputs[:, len(self.class_names)] if outputs.shape[1] > len(self.class_names) else None

    def outputs(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """The exported model's raw output: probabilities, then the known score when there is one."""
        return in_batches(batch_fn(self.model), self._decoder.batch(images), batch_size)

    @cached_property
    def _decoder(self) -> Decoder:
        # One per result: its traced bytes decoder is traced once, not on every predict call.
        return Decoder(self.model.input_shape[1:3], self.config.center_crop)

    def __repr__(self) -> str:  # a summary: every field would be huge
        return text(self)

    def _repr_html_(self) -> str:  # what a notebook cell shows
        return html(self)


def run(config: RunConfig | None = None, observer: Observer | None = None, host: PluginHost | None = None,
        *, resume_from: Path | None = None, **options: Any) -> RunResult:
    """Train, evaluate and export one classifier; ``observer`` receives every event
    (``clf.api.run`` adds progress bars).

    ``run(data="photos/", backbone="mobilenet_v2_035", epochs=5)``: options are
    ``RunConfig``'s fields; given beside a ``RunConfig`` they override its values. The phases
    run in order (the flow map on top of this module)."""
    config = configure(config, options)
    recorder = RunRecorder()
    observer = TeeObserver(recorder, observer or Observer())
    started = datetime.now()
    setup = resolve(config, host or get_host(config.plugins))
    ckpt = checkpoint.require(resume_from) if resume_from is not None else None
    if ckpt is None:
        guardrails.check_output(config.output, config.force)  # before any slow work
    # Before anything (data too) starts TensorFlow: multi-worker must configure it first.
    dist = distribution(config.strategy, config.precision, config.batch_size)
    if dist.replicas > 1 or not dist.chief:
        observer.note(dist.describe())

    data = load_data(config, setup.loader, setup.image_size, observer)
    multilabel.check(config, data.bundle, setup.backbone)  # what multi-label runs refuse, before slow work
    if ckpt is not None and resume_from is not None:  # before any slow work
        checkpoint.check_data(ckpt, data.bundle, config.data, resume_from, observer)
    base = build_backbone_phase(setup, dist, observer)
    batch_size = guardrails.batch_size_for(config.batch_size, data.n_train, observer)
    extracted = None if setup.backbone.trainable else extract_features(
        setup, data, base, dist, batch_size=batch_size, observer=observer)
    trainable = assemble(setup, data, base, extracted, dist, batch_size)

    run_dir = open_run_dir(config, chief=dist.chief, resume_from=resume_from)
    runrecord.write_config(run_dir, config)  # first, so even a crashed run says what it was
    if data.report is not None:
        written = data.report.write(run_dir)
        if data.report.quarantined and dist.chief:  # a worker's folder is temporary
            observer.note(f"{written} lists the {len(data.report.quarantined)} quarantined file(s) and why.")
    fitted = fit_head(setup, data, trainable, dist, ckpt=ckpt, run_dir=run_dir, batch_size=batch_size,
                      observer=observer)
    history, timings, training = dict(fitted.history), {"train": fitted.seconds}, {"head": fitted.info}
    if extracted is not None:
        timings["extract"] = extracted.seconds
    if config.fine_tune_layers:
        tuned = fine_tune(setup, data, trainable, dist, class_weight=fitted.class_weight, run_dir=run_dir,
                          batch_size=batch_size, observer=observer)
        history.update(tuned.history)
        timings["fine_tune"], training["fine_tune"] = tuned.seconds, tuned.info

    # Multi-label: no known score (calibrated for one class a photo); clf.train.multilabel.check
    known = None if data.bundle.multilabel else fit_unknown(setup, data, trainable, extracted, fitted, observer)
    t0 = time.perf_counter()
    folds = cross_validate_phase(setup, data, trainable, extracted, training["head"], observer)
    if folds:
        timings["cross_validate"] = time.perf_counter() - t0
    labels_extra: dict[str, Any] = {}
    if data.bundle.multilabel and extracted is not None:
        cuts = multilabel.thresholds(fitted, data.bundle.num_classes)
        evaluated = multilabel.evaluate(setup, data, trainable, extracted, cuts, observer)
        labels_extra = multilabel.metadata(cuts)
    else:
        evaluated = evaluate_run(setup, data, trainable, extracted, dist, batch_size=batch_size, observer=observer)
    if folds:
        evaluated.metrics["cv_accuracy"] = folds["accuracy"]["mean"]
    exported = export_run(setup, data, trainable, extracted, evaluated, dist, run_dir=run_dir, observer=observer,
                          known=known, extra_metadata=labels_extra)
    extraction = extracted.counts if extracted is not None else {}
    manifest = record_run(setup, data, evaluated, exported, recorder, extraction=extraction, training=training,
                          started=started, run_dir=run_dir, observer=observer,
                          runtime=extracted.runtime if extracted else None, known=known, cross_validation=folds)
    if not dist.chief:  # its folder was temporary
        shutil.rmtree(run_dir, ignore_errors=True)
        exported.artifacts = {}
    result = RunResult(config, run_dir, data.bundle.class_names, history, evaluated.metrics, exported.artifacts,
                       trainable.classifier, data.counts, evaluation=evaluated.reports, manifest=manifest,
                       verification=exported.verification, timings=timings, extraction=extraction,
                       distribution=dist.as_info(), training=training, cross_validation=folds)
    if dist.chief:
        finish_callbacks(result, setup.host)
    return result


def configure(config: RunConfig | None, options: dict[str, Any]) -> RunConfig:
    """``config`` with ``options`` applied, validated (an unknown option is a ConfigError)."""
    if config is not None and not isinstance(config, RunConfig):
        raise ConfigError(
            f"clf.run takes a RunConfig or keyword options, not {type(config).__name__} "
            f"{config!r}; expected e.g. clf.run(data='photos/', backbone='vgg16'). Pass the "
            f"options by name."
        )
    if config is None:
        return RunConfig.from_mapping(options)
    return RunConfig.from_mapping({**config.to_dict(), **options}) if options else config


def finish_callbacks(result: RunResult, host: PluginHost) -> None:
    """Each callback plugin's ``finish(result)`` (register_callbacks), once the run folder is complete."""
    for factory in host.callbacks:
        if factory.finish is not None:
            factory.finish(result)


def cross_validate_phase(setup: Setup, data: LoadedData, trainable: Trainable, extracted: Extracted | None,
                         head_info: dict[str, Any], observer: Observer) -> dict[str, Any]:
    """--folds K: every labelled image's cached features scored K-fold (clf.train.crossval)."""
    if not setup.config.folds or extracted is None:
        return {}
    from clf.train.crossval import cross_validate, labelled_features

    features, labels = labelled_features(extracted, trainable.n_clean)
    observer.phase_start("cross_validate")
    t0 = time.perf_counter()
    report = cross_validate(setup, features, labels, data.bundle.class_names, head_info)
    observer.phase_end("cross_validate", report=report, seconds=time.perf_counter() - t0)
    return report


def build_backbone_phase(setup: Setup, dist: Distribution, observer: Observer) -> keras.Model:
    """The backbone, seeded and built under the strategy and the precision policy."""
    import keras

    config = setup.config
    if config.weights == "none":
        observer.note(f"Backbone {setup.backbone.name} uses random weights (--weights none): "
                      f"expect much lower accuracy than with pretrained weights.")
    observer.phase_start("build")
    keras.utils.set_random_seed(config.seed)
    with dist.strategy.scope(), precision_scope(dist.precision):
        base = build_backbone(setup.backbone, setup.image_size, None if config.weights == "none" else config.weights)
    observer.phase_end("build", weights=config.weights, params=base.count_params(), **dist.as_info())
    return base


def resume(run_dir: str | Path, observer: Observer | None = None, host: PluginHost | None = None,
           **options: Any) -> RunResult:
    """Continue an interrupted run from its last completed epoch (same config, same folder);
    ``options`` (flags beside ``clf run --resume``) must equal the recorded values."""
    ckpt = checkpoint.require(run_dir)
    values = {k: v for k, v in ckpt.config.items() if k not in ("force",)}
    config = RunConfig.from_mapping({**values, "output": str(run_dir)})
    conflicts = _conflicts(config, options)
    if conflicts:
        raise ConfigError(
            f"--resume {str(run_dir)!r} continues the run with the settings its checkpoint recorded, "
            f"but {', '.join(conflicts)}. Expected no other values on a resume. Drop "
            f"{'that flag' if len(conflicts) == 1 else 'those flags'} to resume, or start a new run "
            f"with them: clf run --config {str(Path(run_dir) / 'config.toml')!r} --output NEW_RUN_FOLDER "
            f"and the flags."
        )
    return run(config, observer, host, resume_from=Path(run_dir))


# Not settings of the run: --plugin loads plugins for this process, --force never applies.
_NOT_COMPARED = ("plugins", "force")
_PATHS = ("data", "output", "cache_dir", "weights")


def _conflicts(recorded: RunConfig, options: dict[str, Any]) -> list[str]:
    """``--flag VALUE (recorded: VALUE)`` for each option that differs from the recorded config."""
    given = configure(recorded, {k: v for k, v in options.items() if k not in _NOT_COMPARED}).to_dict()
    before = recorded.to_dict()
    found = []
    for name in options:
        flag, value, was = name.replace("_", "-"), given.get(name), before.get(name)
        if name in _NOT_COMPARED or value == was:
            continue
        if name in _PATHS and isinstance(value, str) and isinstance(was, str) \
                and Path(value).resolve() == Path(was).resolve():
            continue  # the same folder or file, spelled differently
        if isinstance(value, bool):
            found.append(f"--{'' if value else 'no-'}{flag} was given (recorded: {was})")
        else:
            found.append(f"--{flag} {_shown(value)} was given (recorded: {_shown(was)})")
    return found


def _shown(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, list) else value
