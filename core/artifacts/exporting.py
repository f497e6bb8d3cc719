"""The export phase of a run: every chosen exporter, each artifact's round-trip check, then
``labels.json``. Exporters get the photo model (crops and resizes any photo as clf does),
except full-int8 TFLite and ``--model-input fixed``, which get the fixed-size model."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from clf.errors import ClfError, ConfigError, ExportError, UsageError, VerificationError
from clf.events import Observer
from clf.infer.forward import BatchFn, batch_fn, in_batches
from clf.artifacts.labels import LABELS_FILE, record_digests
from clf.artifacts.deployment import build_rows, write_table
from clf.artifacts.verify import (FLOAT_CHECK_IMAGES, KERAS_FORMATS, MAX_IMAGES, VerificationReport, input_record,
                                  proven_identical, test_vectors, verify_exports, write_report)
from clf.artifacts.quantize import LADDERS, RESOLVE_IMAGES, VARIANT_INPUT, Outcome, QuantizeCheck, TrainingData
from clf.files import free_bytes, temp_name, write_json
from clf.data.guardrails import remove_orphans
from clf.data.images import ImageSize

if TYPE_CHECKING:
    from clf.data.images import DatasetBundle
    from clf.host.registry import Exporter

REPRESENTATIVE_IMAGES = 300  # TFLite's guidance: ~100-500 samples calibrate int8 well
# Bytes written per byte of weights; generous, as running out mid-write is what this prevents.
SIZE_RATIO = {"h5": 2.2, "savedmodel": 1.5}
DEFAULT_SIZE_RATIO = 1.5
SPACE_MARGIN = 32 * 1024 * 1024


class ExportOptions(Protocol):
    """What exporting reads of a run's options: its RunConfig, or clf export's own."""

    @property
    def export(self) -> Sequence[str]: ...
    @property
    def quantize(self) -> str: ...
    @property
    def verify(self) -> bool: ...
    @property
    def model_input(self) -> str: ...


def check_free_space(model: Any, run_dir: Path, exporters: Sequence[Exporter]) -> None:
    """ExportError before anything is written when the artifacts will not fit on the disk."""
    weights = sum(int(np.prod(w.shape)) * np.dtype(getattr(w, "dtype", "float32")).itemsize
                  for w in model.weights)
    needed = int(sum(SIZE_RATIO.get(e.name, DEFAULT_SIZE_RATIO) for e in exporters) * weights) + SPACE_MARGIN
    free = free_bytes(run_dir)
    if free < needed:
        raise ExportError(
            f"Not enough free space to export into {str(run_dir)!r}: the {len(exporters)} artifact(s) "
            f"({', '.join(e.name for e in exporters)}) need about {needed / 2**20:,.0f} MiB, the disk has "
            f"{free / 2**20:,.0f} MiB free. Nothing was written; the trained model is kept in the "
            f"checkpoint. Free some space, then: clf run --resume {run_dir}"
        )


def _write_failed(exc: BaseException) -> str:
    """A hint when an exporter failed for lack of space (h5py and TensorFlow put the errno only in the text)."""
    import errno

    codes = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
    text = str(exc)
    if ((isinstance(exc, OSError) and exc.errno in codes)
            or any(f"errno = {c}" in text or os.strerror(c) in text for c in codes)):
        return " (the disk is full or a file-size limit was reached: free some space first)"
    return ""


def check_export_options(config: ExportOptions, exporters: Sequence[Exporter]) -> None:
    """``--export`` checked before slow work: each exporter's ``requires`` modules installed (found,
    not imported: cheap), ``--quantize`` taken by an exporter."""
    for exporter in exporters:
        missing = [name for name in getattr(exporter, "requires", ()) if not _importable(name)]
        if missing:
            install = exporter.install or f"pip install {' '.join(missing)}"
            raise ConfigError(
                f"Exporter {exporter.name!r} needs {', '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed; expected every package "
                f"an --export format needs to be installed before anything runs. Install "
                f"{'it' if len(missing) == 1 else 'them'} ({install}) or drop {exporter.name} from --export."
            )
        problem = exporter.check() if exporter.check is not None else None
        if problem:
            raise ConfigError(f"Exporter {exporter.name!r} cannot run: {problem} Or drop {exporter.name} from --export.")
    if config.quantize != "none" and not any("quantize" in e.options for e in exporters):
        raise ConfigError(
            f"--quantize {config.quantize} applies to exporters that quantize (tflite), but "
            f"--export is {','.join(config.export)}. Add tflite to --export "
            f"(e.g. --export h5,tflite) or drop --quantize."
        )


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None
        return False


def spread(labels: Sequence[int] | np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` rows, the same share of each class, evenly spaced within it
    (loaders list files class by class: the first ``limit`` would cover one or two classes)."""
    rows_of = np.asarray(labels)
    if len(rows_of) <= limit:
        return np.arange(len(rows_of))
    picked = []
    for c in np.unique(rows_of):
        rows = np.flatnonzero(rows_of == c)
        take = max(1, round(limit * len(rows) / len(rows_of)))
        picked.append(rows[np.linspace(0, len(rows) - 1, min(take, len(rows))).round().astype(int)])
    return np.sort(np.unique(np.concatenate(picked)))[:limit]


def representative_data(bundle: DatasetBundle, limit: int = REPRESENTATIVE_IMAGES) -> Callable[[], Iterator[np.ndarray]]:
    """A lazy factory of raw training images ``[1, h, w, 3]`` for int8 calibration, decoded as the
    exported fixed-size model takes them, the same share of each class."""
    files = bundle.splits["train"] if "train" in bundle.splits else None

    def batches() -> Iterator[np.ndarray]:
        if files is not None and bundle.make_dataset is not None and len(files) > limit:
            picked = spread(files.labels, limit)
            dataset = bundle.make_dataset([files.files[i] for i in picked], [files.labels[i] for i in picked])
        else:
            dataset = bundle.train.take(limit)
        for image, _ in dataset:
            yield np.asarray(image, np.float32)[None]

    return batches


def training_data(bundle: DatasetBundle, limit: int = RESOLVE_IMAGES) -> TrainingData | None:
    """Training images and class indices in batches of 32 (the quantization ladder's
    ``resolved-head``), the same share of each class; None without a training split."""
    files = bundle.splits.get("train")
    if files is None or bundle.make_dataset is None:
        return None
    picked = spread(files.labels, limit)
    chosen, targets = [files.files[i] for i in picked], [files.labels[i] for i in picked]

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        assert bundle.make_dataset is not None
        images, labels = [], []
        for image, label in bundle.make_dataset(chosen, targets):
            images.append(np.asarray(image, np.float32))
            labels.append(int(np.asarray(label).argmax()) if np.ndim(label) else int(label))
            if len(images) == 32:
                yield np.stack(images), np.asarray(labels)
                images, labels = [], []
        if images:
            yield np.stack(images), np.asarray(labels)

    return batches


def held_out(bundle: DatasetBundle, limit: int = MAX_IMAGES) -> tuple[Any, list[str], str, np.ndarray]:
    """``(dataset, files, split, rows)``: up to ``limit`` images of test, else validation, else
    (said so) training; ``rows``, their positions in the split. The same share of each class
    (``spread``) when the loader can load a subset, else the split's first ``limit``."""
    for split, ds in (("test", bundle.test), ("validation", bundle.validation), ("train", bundle.train)):
        if ds is None:
            continue
        listed = bundle.splits.get(split)
        if listed is not None and bundle.make_dataset is not None and len(listed) > limit:
            rows = spread(listed.labels, limit)
            files = [listed.files[i] for i in rows]
            return bundle.make_dataset(files, [listed.labels[i] for i in rows]), files, split, rows
        files = list(listed.files[:limit]) if listed is not None else []
        return ds.take(limit), files, split, np.arange(min(limit, len(listed)) if listed is not None else limit)
    raise ExportError("The dataset has no images to verify exports on.")


def export_all(model: Any, run_dir: Path, metadata: dict[str, Any], exporters: Sequence[Exporter], config: ExportOptions,
               bundle: DatasetBundle,
               observer: Observer, reference: BatchFn | None = None,
               reference_probs: Callable[[str], np.ndarray | None] | None = None,
               staged: bool = False,
               photo_probs: Callable[[list[str]], np.ndarray | None] | None = None) -> tuple[dict[str, list[Path]], VerificationReport | None]:
    """Run the exporters, verify what they wrote, write ``labels.json``; raise on failure.

    ``reference``: the forward compared with (default ``model``'s,
    ``clf.infer.forward.batch_fn``). ``reference_probs(split)``: the reference's
    probabilities on that split's images, when known (None: computed). ``photo_probs(files)``:
    the reference's outputs on those photos decoded in full, when known cheaply. ``staged``: the files
    move into ``run_dir`` together, and only if none replaces a file (``clf export``)."""
    from clf.data.fitting import fixed_model, photo_model
    options: dict[str, Any] = {"quantize": config.quantize, "representative_data": representative_data(bundle)}
    size = ImageSize(metadata["input_size"], float(metadata.get("resize", {}).get("center_crop", 0.0)))
    fixed = fixed_model(model)
    checked = None
    if config.verify and config.quantize in LADDERS and any("quantize_check" in e.options for e in exporters):
        # Decoded once: the ladder judges each variant on the images verification then uses.
        checked = _held_out_images(bundle, MAX_IMAGES, reference or batch_fn(fixed), reference_probs)
        assert checked[3] is not None  # computed with a reference given
        options["quantize_check"] = QuantizeCheck(checked[0], checked[3], metadata, training_data(bundle))
    photo = photo_model(fixed, size) if config.model_input == "photo" else None
    inputs: dict[str, dict] = {}
    remove_orphans(run_dir)  # half-written files of an earlier run that was killed mid-export
    check_free_space(model, run_dir, exporters)
    observer.phase_start("export", total=len(exporters))
    artifacts: dict[str, list[Path]] = {}
    written_from: dict[str, Any] = {}  # exporter -> the in-memory model it wrote (verification's proof)
    # One hidden folder (an orphan name, removed if killed): its files move together or not at all.
    staging = temp_name(run_dir / "export") if staged else None
    try:
        if staging is not None:
            staging.mkdir()
        for exporter in exporters:
            kwargs = {k: options[k] for k in exporter.options if k in options}
            int8 = "quantize" in exporter.options and config.quantize == "int8"
            # The photo model, unless the run asked for the fixed input or full int8 (an
            # integer graph has no place for the float resize).
            target = fixed if photo is None or int8 or exporter.fixed_input else photo
            inputs[exporter.name] = input_record("fixed" if target is fixed else "photo", size, int8)
            files = _run_exporter(exporter, target, run_dir, {**metadata, "inputs": {
                exporter.name: inputs[exporter.name]}}, kwargs, into=staging)
            artifacts[exporter.name] = files
            written_from[exporter.name] = target
            observer.phase_advance("export")
        if staging is not None:
            artifacts = _move_staged(staging, run_dir, artifacts)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    ladder = options.get("quantize_check")
    _record_artifacts(metadata, artifacts, inputs, config, exporters, ladder, observer)
    # The kept variant already ran on the check's images: verification judges those outputs.
    ran = {e.name: ladder.outcome.outputs for e in exporters if "quantize_check" in e.options
           and ladder is not None and ladder.outcome is not None and ladder.outcome.outputs is not None}
    report = _verify(reference or batch_fn(fixed), metadata, artifacts, exporters, config, bundle, run_dir, observer,
                     reference_probs, checked, ran, written_from, photo_probs) if config.verify else None
    write_json(run_dir / LABELS_FILE, metadata)
    if report is not None and report.failed:
        raise VerificationError(
            "Round-trip check failed: " + "; ".join(r.describe() for r in report.failed)
            + (f". The quantization ladder: {ladder.outcome.describe()}" if ladder is not None and
               ladder.outcome is not None and not ladder.outcome.passed else "")
            + f". The failed artifact(s) were renamed to *.failed in {str(run_dir)!r}; see "
            f"verification.json. Try another --export or --quantize (int8 needs representative "
            f"training images; float16 or dynamic lose less)."
        )
    observer.phase_end("export", artifacts=artifacts, run_dir=run_dir)
    return artifacts, report


def _record_artifacts(metadata: dict[str, Any], artifacts: dict[str, list[Path]], inputs: dict[str, dict],
                      config: ExportOptions, exporters: Sequence[Exporter], ladder: QuantizeCheck | None,
                      observer: Observer) -> None:
    """labels.json's record of what was written: files, inputs, sha256, quantization (and its variant)."""
    # Added to what labels.json already lists (clf export adds formats to a finished run).
    metadata["artifacts"] = {**metadata.get("artifacts", {}),
                             **{name: [f.name for f in files] for name, files in artifacts.items()}}
    metadata["inputs"] = {**metadata.get("inputs", {}), **inputs}
    # Recorded now, checked before every later open (clf.artifacts.labels.check_artifact).
    metadata["sha256"] = {**metadata.get("sha256", {}),
                          **record_digests(f for files in artifacts.values() for f in files)}
    if config.quantize != "none":
        metadata["quantization"] = {**metadata.get("quantization", {}),
                                    **{e.name: config.quantize for e in exporters if "quantize" in e.options}}
    if ladder is not None and ladder.outcome is not None:
        _record_variant(metadata, ladder.outcome, [e.name for e in exporters if "quantize_check" in e.options],
                        observer)


def _run_exporter(exporter: Exporter, target: Any, run_dir: Path, metadata: dict[str, Any],
                  kwargs: dict[str, Any], into: Path | None = None) -> list[Path]:
    """One exporter's files (into ``into``, else ``run_dir``); failing, it leaves nothing half-written."""
    try:
        return [Path(f) for f in exporter.export(target, into or run_dir, metadata, **kwargs)]
    except BaseException as exc:
        remove_orphans(run_dir)  # whatever the exporter left under a temporary name
        if isinstance(exc, ClfError) or not isinstance(exc, Exception):
            raise
        raise ExportError(
            f"Exporter {exporter.name!r} (plugin {exporter.plugin!r}) failed: "
            f"{type(exc).__name__}: {exc}{_write_failed(exc)}. The run folder {str(run_dir)!r} "
            f"keeps what was written before; try another --export, or free space and "
            f"clf run --resume {run_dir}."
        ) from exc


def _move_staged(staging: Path, run_dir: Path,
                 artifacts: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Move the staged files into ``run_dir``, or none if one would replace a file there."""
    written = {name: [_inside(f, staging) for f in files] for name, files in artifacts.items()}
    names = list(dict.fromkeys(rel.parts[0] for files in written.values() for rel in files))
    clash = [n for n in names if (run_dir / n).exists() or (run_dir / n).is_symlink()]
    if clash:
        one = len(clash) == 1
        raise UsageError(
            f"clf export would write {', '.join(map(repr, clash))} over the file{'' if one else 's'} of that "
            f"name in {str(run_dir)!r}, which {'is' if one else 'are'} not the run's own artifact{'' if one else 's'} "
            f"(its labels.json does not list {'it' if one else 'them'}); clf never replaces a file it did not "
            f"write. Nothing was written. Move {'it' if one else 'them'} out of the run folder, then run "
            f"clf export again."
        )
    for n in names:
        os.replace(staging / n, run_dir / n)
    return {name: [run_dir / rel for rel in files] for name, files in written.items()}


def _inside(path: Path, folder: Path) -> Path:
    """``path`` relative to ``folder``; an ExportError when an exporter wrote elsewhere."""
    for p, f in ((path, folder), (path.resolve(), folder.resolve())):
        if p.is_relative_to(f):
            return p.relative_to(f)
    raise ExportError(f"An exporter returned {str(path)!r}, outside the folder it was given; expected "
                      f"the files it wrote there. Fix the exporter plugin.")


def _held_out_images(bundle: DatasetBundle, limit: int, reference: BatchFn | None,
                     reference_probs: Callable[[str], np.ndarray | None] | None
                     ) -> tuple[np.ndarray, list[str], str, np.ndarray | None, np.ndarray]:
    """``(images, files, split, the reference's outputs on them or None, their rows in the split)``
    of ``held_out``; with ``reference`` given, outputs it does not know are computed."""
    ds, files, source, rows = held_out(bundle, limit)
    images = np.stack([np.asarray(x, np.float32) for x, _ in ds])
    rows = rows[:len(images)]
    known = _rows_of(reference_probs, source, rows)
    if known is None and reference is not None:
        known = in_batches(reference, images)
    return images, files, source, known, rows


def _rows_of(reference_probs: Callable[[str], np.ndarray | None] | None, source: str,
             rows: np.ndarray) -> np.ndarray | None:
    """The reference's known outputs (one row per image of the split) at ``rows``; None: not known."""
    known = reference_probs(source) if reference_probs is not None else None
    if known is None or (len(rows) and len(known) <= int(rows.max())):
        return None  # not one row per image of the split: computed instead
    return known[rows]


def _record_variant(metadata: dict[str, Any], outcome: Outcome, names: Sequence[str], observer: Observer) -> None:
    """labels.json's ``quantization_variant`` and the artifact's input and output types; one line said."""
    metadata["quantization_variant"] = {**metadata.get("quantization_variant", {}),
                                        **{name: outcome.record() for name in names}}
    for name in names:
        if name in metadata.get("inputs", {}):
            metadata["inputs"][name]["dtype"] = VARIANT_INPUT.get(outcome.variant, "uint8") \
                if outcome.mode == "int8" else "float32"
    observer.note(f"{', '.join(names)} --quantize {outcome.describe()}")


def _deployment(run_dir: Path, report: VerificationReport, bundle: DatasetBundle, source: str,
                reference: np.ndarray | None, rows: np.ndarray,
                reference_probs: Callable[[str], np.ndarray | None] | None,
                artifacts: dict[str, list[Path]], metadata: dict[str, Any]) -> None:
    """deployment.json from verification's outputs (clf.artifacts.deployment) on the split's
    ``rows``; a Keras-only export scores the whole split on the reference's outputs it already
    has, decoding nothing more."""
    split = bundle.splits.get(source)
    if split is None or reference is None:
        return
    if all(name in KERAS_FORMATS for name in report.results) and reference_probs is not None:
        more = reference_probs(source)
        if more is not None and len(more) == len(split):
            reference, rows = more, np.arange(len(split))
    targets = np.asarray(split.labels)[rows[:len(reference)]]
    write_table(run_dir, build_rows(report, targets, reference[:len(targets)], artifacts, metadata), source)


def _verify(reference: BatchFn, metadata: dict[str, Any], artifacts: dict[str, list[Path]], exporters: Sequence[Exporter],
            config: ExportOptions, bundle: DatasetBundle, run_dir: Path, observer: Observer,
            reference_probs: Callable[[str], np.ndarray | None] | None,
            checked: tuple[np.ndarray, list[str], str, np.ndarray | None, np.ndarray] | None = None,
            ran: dict[str, np.ndarray] | None = None, written_from: dict[str, Any] | None = None,
            photo_probs: Callable[[list[str]], np.ndarray | None] | None = None) -> VerificationReport:
    """Verify against ``reference``, write verification.json, update ``metadata`` (vectors, failures, summary)."""
    observer.phase_start("verify", total=len(artifacts))
    identical = proven_identical(artifacts, {e.name: e for e in exporters}, written_from)
    # Keras formats (the reference's own runtime) are checked on FLOAT_CHECK_IMAGES: decode no
    # more unless another runtime's artifact needs its accuracy for the deployment table.
    wide = config.quantize != "none" or any(name not in KERAS_FORMATS for name in artifacts)
    known = None
    if checked is None and set(artifacts) <= identical:
        # Nothing to run: no image decoded (the test vectors use the files, the table cached outputs).
        _, files, source, rows = held_out(bundle, FLOAT_CHECK_IMAGES)
        known = _rows_of(reference_probs, source, rows)
        images = np.zeros((0, 0, 0, 3), np.float32)
    if known is None:
        images, files, source, known, rows = checked or _held_out_images(
            bundle, MAX_IMAGES if wide else FLOAT_CHECK_IMAGES, reference, reference_probs)
    report = verify_exports(reference, metadata, artifacts, {e.name: e for e in exporters},
                            images, files, source, known, ran if checked is not None else None,
                            models=written_from, photo_probs=photo_probs, identical=identical)
    if report.reference_probs is not None and len(files) >= len(report.reference_probs):
        metadata["test_vectors"] = test_vectors(files, report.reference_probs, metadata)
    write_report(run_dir, report)
    _deployment(run_dir, report, bundle, source, known, rows, reference_probs, artifacts, metadata)
    for failed in report.failed:  # renamed to *.failed: no longer listed as usable
        metadata["inputs"].pop(failed.exporter, None)
        for name in metadata["artifacts"].pop(failed.exporter, []):
            metadata["sha256"].pop(name, None)
    # labels.json's summary keeps earlier results of listed artifacts not rechecked now.
    summary = report.summary()
    earlier = {name: r for name, r in (metadata.get("verification") or {}).get("results", {}).items()
               if name in metadata["artifacts"] and name not in summary["results"]}
    if earlier:
        summary["results"] = {**earlier, **summary["results"]}
        summary["passed"] = all(r.get("passed") for r in summary["results"].values())
    metadata["verification"] = summary
    observer.phase_end("verify", passed=not report.failed, source=report.source,
                       results=[asdict(r) for r in report.results.values()],
                       lines=[("ok " if r.passed else "FAILED ") + r.describe() for r in report.results.values()])
    return report
