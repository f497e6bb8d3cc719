"""The export phase of a run: every chosen exporter, then the round-trip check of each
artifact, then ``labels.json`` listing what was written and how it verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from clf.errors import ClfError, ConfigError, ExportError, VerificationError
from clf.events import Observer
from clf.artifacts.labels import write_labels
from clf.artifacts.verify import FLOAT_CHECK_IMAGES, MAX_IMAGES, VerificationReport, verify_exports, write_report

REPRESENTATIVE_IMAGES = 300  # TFLite's guidance: ~100-500 samples calibrate int8 well


def check_export_options(config, exporters) -> None:
    """``--quantize`` only means something to an exporter that takes it: say so up front."""
    if config.quantize != "none" and not any("quantize" in e.options for e in exporters):
        raise ConfigError(
            f"--quantize {config.quantize} applies to exporters that quantize (tflite), but "
            f"--export is {','.join(config.export)}. Add tflite to --export "
            f"(e.g. --export h5,tflite) or drop --quantize."
        )


def representative_data(bundle, limit: int = REPRESENTATIVE_IMAGES) -> Callable[[], Iterator[np.ndarray]]:
    """A generator factory of single raw training images ``[1, h, w, 3]`` (un-augmented),
    for int8 calibration; nothing is read unless an exporter asks for it.

    The images are spread evenly over the training files: loaders list them class by class,
    so the first ``limit`` would calibrate the activation ranges on one or two classes only
    (hymenoptera's first 100 were all ants)."""
    files = bundle.splits["train"] if "train" in bundle.splits else None

    def batches() -> Iterator[np.ndarray]:
        if files is not None and bundle.make_dataset is not None and len(files) > limit:
            picked = np.linspace(0, len(files) - 1, limit).round().astype(int)
            dataset = bundle.make_dataset([files.files[i] for i in picked], [files.labels[i] for i in picked])
        else:
            dataset = bundle.train.take(limit)
        for image, _ in dataset:
            yield np.asarray(image, np.float32)[None]

    return batches


def held_out(bundle, limit: int = MAX_IMAGES) -> tuple[Any, list[str], str]:
    """The images verification runs on: test, else validation, else (said so) training;
    the first ``limit`` of them."""
    for split, ds in (("test", bundle.test), ("validation", bundle.validation), ("train", bundle.train)):
        if ds is not None:
            files = bundle.splits[split].files[:limit] if split in bundle.splits else []
            return ds.take(limit), files, split
    raise ExportError("The dataset has no images to verify exports on.")


def export_all(model, run_dir: Path, metadata: dict, exporters: Sequence, config, bundle,
               observer: Observer, reference=None,
               reference_probs: Callable[[str], np.ndarray | None] | None = None,
               ) -> tuple[dict[str, list[Path]], VerificationReport | None]:
    """Run the exporters, verify what they wrote, write ``labels.json``; raise on failure.

    ``reference``: what the artifacts are compared with (anything with ``predict_on_batch``;
    default ``model``). Under several replicas the engine passes a local predictor, since
    Keras' ``predict_on_batch`` then returns one row per image per replica.
    ``reference_probs(split)``: the reference's probabilities on that split's images in
    order, when the caller already has them (None: compute them)."""
    options = {"quantize": config.quantize, "representative_data": representative_data(bundle)}
    observer.phase_start("export", total=len(exporters))
    artifacts: dict[str, list[Path]] = {}
    for exporter in exporters:
        kwargs = {k: options[k] for k in exporter.options if k in options}
        try:
            files = [Path(f) for f in exporter.export(model, run_dir, dict(metadata), **kwargs)]
        except ClfError:
            raise
        except Exception as exc:
            raise ExportError(
                f"Exporter {exporter.name!r} (plugin {exporter.plugin!r}) failed: "
                f"{type(exc).__name__}: {exc}. The run folder {str(run_dir)!r} keeps what was "
                f"written before; try another --export."
            ) from exc
        artifacts[exporter.name] = files
        observer.phase_advance("export")
    metadata["artifacts"] = {name: [f.name for f in files] for name, files in artifacts.items()}
    if config.quantize != "none":
        metadata["quantization"] = {e.name: config.quantize for e in exporters if "quantize" in e.options}

    report = None
    if config.verify:
        observer.phase_start("verify", total=len(artifacts))
        # Float artifacts are checked on FLOAT_CHECK_IMAGES: decode no more unless quantized.
        ds, files, source = held_out(bundle, MAX_IMAGES if config.quantize != "none" else FLOAT_CHECK_IMAGES)
        images = np.stack([np.asarray(x, np.float32) for x, _ in ds])
        known = reference_probs(source) if reference_probs is not None else None
        if known is not None and len(known) < len(images):
            known = None  # not one row per image: compute them instead
        report = verify_exports(reference or model, metadata, artifacts, {e.name: e for e in exporters},
                                images, files, source, known[:len(images)] if known is not None else None)
        write_report(run_dir, report)
        metadata["verification"] = report.summary()
        for failed in report.failed:  # renamed to *.failed: no longer listed as usable
            metadata["artifacts"].pop(failed.exporter, None)
        observer.phase_end("verify", passed=not report.failed, source=report.source,
                           results=[r.to_dict() for r in report.results.values()],
                           lines=[("ok " if r.passed else "FAILED ") + r.describe() for r in report.results.values()])
    write_labels(run_dir, metadata)
    if report is not None and report.failed:
        raise VerificationError(
            "Round-trip check failed: " + "; ".join(r.describe() for r in report.failed)
            + f". The failed artifact(s) were renamed to *.failed in {str(run_dir)!r}; see "
            f"verification.json. Try another --export or --quantize (int8 needs representative "
            f"training images; float16 or dynamic lose less)."
        )
    observer.phase_end("export", artifacts=artifacts, run_dir=run_dir)
    return artifacts, report
