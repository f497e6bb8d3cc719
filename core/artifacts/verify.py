"""Round-trip verification: reopen an exported artifact in its own runtime and compare it
with its Keras model on held-out images (after every export, and in ``clf verify ARTIFACT``).

Float artifacts must match within ``FLOAT_TOLERANCE`` (max absolute probability difference);
quantized ones need ``MIN_QUANTIZED_AGREEMENT`` top-1 agreement. A failed artifact becomes
``<name>.failed`` so nothing downstream mistakes it for a good one. An artifact that takes
the photo itself is also checked through a client's path (Pillow decode, raw photo in)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from clf.errors import DataError, ModelError
from clf.files import file_hash, write_json
from clf.infer.forward import BatchFn, in_batches
from clf.infer.decode import Decoder
from clf.artifacts.labels import read_labels, split_outputs
from clf.artifacts.predict import collect_images, load_predictor, resolve_artifact
from clf.data.filecheck import inside_folder
from clf.data.images import ImageSize
from clf.data.manifest import read_manifest

if TYPE_CHECKING:
    from clf.artifacts.predict import Predictor
    from clf.host.manager import PluginHost

FLOAT_TOLERANCE = 1e-4
MIN_QUANTIZED_AGREEMENT = 0.95
VERIFICATION_FILE = "verification.json"
FAILED_SUFFIX = ".failed"
MAX_IMAGES = 256  # enough for a stable agreement figure; keeps export checks to seconds
# A float conversion error shows on any image; quantized ones get MAX_IMAGES (see benchmarks/overhead.py).
FLOAT_CHECK_IMAGES = 8
KERAS_FORMATS = ("h5", "keras")  # artifacts the reference's own runtime opens

# The client path: Pillow decodes the photo, the artifact crops and resizes it. labels.json
# records each artifact's input and test vectors for integrators; this path must give clf's answer.
# Same pixels from Pillow and clf (accurate integer IDCT); only resize rounding remains.
CLIENT_TOLERANCE = 1e-3
CLIENT_IMAGES = 8  # photos per artifact: the path either matches or it does not
TEST_VECTORS = 3


def input_record(kind: str, size: Sequence[int], quantized: bool = False) -> dict:
    """What one artifact takes as input, for ``labels.json``'s ``inputs``."""
    dtype = "uint8" if quantized else "float32"
    if kind == "photo":
        return {"kind": "photo", "name": "image", "shape": [None, None, None, 3], "dtype": dtype,
                "pixels": "RGB 0-255 as decoded, any height and width (a batch shares one size); "
                          "the centre crop and resize happen inside the model"}
    return {"kind": "fixed", "name": "image", "shape": [None, int(size[0]), int(size[1]), 3], "dtype": dtype,
            "pixels": "RGB 0-255, already centre-cropped and resized as 'resize' describes"}


def takes_photo(labels: dict, exporter: str) -> bool:
    """Whether ``exporter``'s artifact here takes a photo of any size (none recorded: fixed)."""
    return labels.get("inputs", {}).get(exporter, {}).get("kind") == "photo"


def pillow_pixels(path: str | Path) -> np.ndarray:
    """One image file as a client decodes it: Pillow, RGB, uint8 ``[h, w, 3]``, no EXIF rotation (as clf)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.uint8)


def client_probabilities(predictor: Predictor, files: Sequence[str | Path]) -> np.ndarray:
    """``predictor``'s probabilities per file, Pillow-decoded and passed raw, one call each (sizes differ)."""
    rows = [np.asarray(predictor.predict_batch(pillow_pixels(f)[None].astype(np.float32)), np.float32)[0]
            for f in files]
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def test_vectors(files: Sequence[str | Path], outputs: np.ndarray, labels: dict[str, Any]) -> list[dict]:
    """``[{file, sha256, height, width, probabilities[, known_score]}]`` of the first ``TEST_VECTORS``
    files, for integrators."""
    vectors = []
    probabilities, known = split_outputs(labels, np.asarray(outputs))
    for i, (f, probs) in enumerate(zip(list(files)[:TEST_VECTORS], probabilities)):
        pixels = pillow_pixels(f)
        vectors.append({"file": Path(f).name, "sha256": file_hash(Path(f)), "height": int(pixels.shape[0]),
                        "width": int(pixels.shape[1]), "probabilities": [round(float(p), 6) for p in probs],
                        **({"known_score": round(float(known[i]), 6)} if known is not None else {})})
    return vectors


@dataclass
class Verification:
    """The outcome of one artifact's round trip."""

    exporter: str
    file: str
    runtime: str
    quantization: str
    images: int
    max_abs_diff: float
    top1_agreement: float
    criterion: str
    passed: bool
    seconds: float = 0.0
    # The client path (Pillow decode, raw photo in).
    client_images: int = 0
    client_max_abs_diff: float | None = None
    client_top1_agreement: float | None = None
    known_agreement: float | None = None  # same known/unknown decision (a model with a known score)
    # "run": reopened in its runtime and run on the images; "identical": the file was proven to
    # hold the in-memory model itself (the exporter's ``holds``), which is the reference.
    method: str = "run"

    def describe(self) -> str:
        if self.method == "identical":
            return (f"{self.exporter} ({self.file}): {self.criterion}, so it answers as the model does "
                    f"(not rerun)")
        known = "" if self.known_agreement is None else f", known/unknown agreement {self.known_agreement:.1%}"
        client = ""
        if self.client_images:
            client = (f"; photos decoded by Pillow and passed raw: max |diff| {self.client_max_abs_diff:.2e}, "
                      f"top-1 agreement {self.client_top1_agreement:.1%} on {self.client_images}")
        return (f"{self.exporter} ({self.file}, {self.runtime}, quantization {self.quantization}): "
                f"max |diff| {self.max_abs_diff:.2e}, top-1 agreement {self.top1_agreement:.1%}{known} on "
                f"{self.images} images{client}; needs {self.criterion}")


@dataclass
class VerificationReport:
    results: dict[str, Verification] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    source: str = ""  # which split the images came from
    # The Keras model's probabilities (for labels.json's test vectors); not in verification.json.
    reference_probs: "np.ndarray | None" = field(default=None, repr=False)
    # Each artifact's outputs on the checked images, its opened predictor and the images: the
    # deployment table (clf.artifacts.deployment) reuses them; not in verification.json.
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    predictors: dict[str, Any] = field(default_factory=dict, repr=False)
    images_array: np.ndarray = field(default_factory=lambda: np.zeros((0,)), repr=False)

    @property
    def failed(self) -> list[Verification]:
        return [r for r in self.results.values() if not r.passed]

    def summary(self) -> dict[str, Any]:
        """The short form that goes into labels.json (``verification`` field)."""
        return {
            "file": VERIFICATION_FILE,
            "passed": not self.failed,
            "images": len(self.images),
            "source": self.source,
            "results": {name: {"passed": r.passed, "max_abs_diff": r.max_abs_diff,
                               "top1_agreement": r.top1_agreement, "quantization": r.quantization,
                               "known_agreement": r.known_agreement, "method": r.method,
                               "client_images": r.client_images, "client_max_abs_diff": r.client_max_abs_diff}
                        for name, r in self.results.items()},
        }


def criterion_for(quantization: str, tolerance: float = FLOAT_TOLERANCE) -> str:
    if quantization == "none":
        return f"max_abs_diff <= {tolerance:g}"
    return f"top1_agreement >= {MIN_QUANTIZED_AGREEMENT:.0%}"


def compare(reference: np.ndarray, got: np.ndarray, quantization: str,
            tolerance: float = FLOAT_TOLERANCE, classes: int | None = None) -> tuple[float, float, bool]:
    """``(max_abs_diff, top1_agreement, passed)`` of two output arrays; top-1 over the first
    ``classes`` columns (None: all), the difference over every column (a known score too)."""
    reference, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if reference.shape != got.shape:
        return float("inf"), 0.0, False
    k = classes or reference.shape[-1]
    if not np.all(np.isfinite(got)):
        return float("inf"), float(np.mean(reference[:, :k].argmax(1) == np.nan_to_num(got[:, :k]).argmax(1))), False
    diff = float(np.max(np.abs(reference - got))) if got.size else 0.0
    agreement = float(np.mean(reference[:, :k].argmax(1) == got[:, :k].argmax(1))) if len(got) else 1.0
    passed = diff <= tolerance if quantization == "none" else agreement >= MIN_QUANTIZED_AGREEMENT
    return diff, agreement, passed


def known_agreement(labels: dict[str, Any], reference: np.ndarray, got: np.ndarray, quantization: str,
                    tolerance: float = FLOAT_TOLERANCE) -> tuple[float | None, bool]:
    """``(share of images with the same known/unknown decision, passed)``; ``(None, True)``
    without a known score. A float artifact must decide as the model on every image whose
    score is more than ``tolerance`` from the threshold; a quantized one on
    ``MIN_QUANTIZED_AGREEMENT`` of them."""
    if not labels.get("unknown") or np.shape(reference) != np.shape(got) or not len(got):
        return None, True
    threshold = float(labels["unknown"]["threshold"])
    ref, new = split_outputs(labels, np.asarray(reference))[1], split_outputs(labels, np.asarray(got))[1]
    same = (ref >= threshold) == (new >= threshold)
    if quantization == "none":
        return float(np.mean(same)), bool(np.all(same | (np.abs(ref - threshold) <= tolerance)))
    return float(np.mean(same)), float(np.mean(same)) >= MIN_QUANTIZED_AGREEMENT


def eight_bit(predictor: Predictor) -> bool:
    """Whether ``predictor``'s client takes 8-bit images (MediaPipe): it is then compared with the
    model on the same images rounded to 8 bits (what rounding moves: benchmarks/deploy_clients.py)."""
    return bool(getattr(predictor, "eight_bit_input", False))


def verify_predictor(name: str, predictor: Predictor, images: np.ndarray, reference: np.ndarray,
                     outputs: dict[str, np.ndarray] | None = None) -> Verification:
    """Run ``predictor`` (a ``clf.Predictor``) on ``images`` and judge it against ``reference``.
    ``outputs``: its outputs are kept in ``outputs[name]``; ones already there for as many
    images (the quantization ladder ran the same file on them) are judged without a second run."""
    t0 = time.perf_counter()
    ran = (outputs or {}).get(name)
    got = ran if ran is not None and len(ran) == len(images) else in_batches(predictor.predict_batch, images)
    seconds = time.perf_counter() - t0
    if outputs is not None:
        outputs[name] = got
    quantization = getattr(predictor, "quantization", "none")
    labels = getattr(predictor, "labels", {})
    diff, agreement, passed = compare(reference, got, quantization, classes=len(labels.get("class_names", [])) or None)
    known, same = known_agreement(labels, reference, got, quantization)
    criterion = criterion_for(quantization) + ("" if known is None else "; the same known/unknown decision" if
                                               quantization == "none" else f"; known/unknown agreement >= "
                                               f"{MIN_QUANTIZED_AGREEMENT:.0%}")
    if eight_bit(predictor):
        criterion += " (on the images rounded to 8 bits, as the client takes them)"
    return Verification(name, predictor.path.name, getattr(predictor, "runtime", "unknown"), quantization,
                        len(images), diff, agreement, criterion, passed and same, seconds, known_agreement=known)


def check_client(result: Verification, predictor: Predictor, files: Sequence[str | Path], reference: np.ndarray) -> None:
    """Run the client path on ``files`` into ``result``; ``reference``: clf's own probabilities for them.

    A quantized artifact is held to its own answers on clf's decoding of the same photos: the
    check is of the client's path, and the quantization's error is judged on many more images by
    the main check (one near-tie among these few photos would otherwise fail it)."""
    if not len(files):
        return
    got = client_probabilities(predictor, files)
    labels = getattr(predictor, "labels", {})
    own = result.quantization != "none"
    if own:
        reference = np.asarray(predictor.predict_batch(predictor.decoder.batch(list(files))), np.float32)
    diff, agreement, ok = compare(reference, got, result.quantization, CLIENT_TOLERANCE,
                                  classes=len(labels.get("class_names", [])) or None)
    ok = ok and known_agreement(labels, reference, got, result.quantization, CLIENT_TOLERANCE)[1]
    result.client_images, result.client_max_abs_diff, result.client_top1_agreement = len(files), diff, agreement
    result.passed = result.passed and ok
    against = "against the artifact's own answers on clf's decoding, " if own else ""
    result.criterion += (f"; photos decoded by Pillow and passed raw: {against}"
                         f"{criterion_for(result.quantization, CLIENT_TOLERANCE)}")


def client_files(files: Sequence[str], count: int) -> list[str]:
    """The first ``CLIENT_IMAGES`` of the ``count`` images' ``files`` for the client path; none
    when a loader streams (fewer files than images, or names that are no files)."""
    if len(files) < min(count, CLIENT_IMAGES) or not all(Path(f).is_file() for f in files[:CLIENT_IMAGES]):
        return []
    return list(files[:min(count, CLIENT_IMAGES)])


def quarantine(files: Sequence[Path]) -> None:
    """Rename a failed artifact's files to ``<name>.failed``: kept, but never taken for a valid model."""
    for f in map(Path, files):
        if f.exists():
            os.replace(f, f.with_name(f.name + FAILED_SUFFIX))


def _read_record(path: Path) -> dict[str, Any]:
    """A ``verification.json``'s object; {} when there is none or it is not a JSON object."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def write_report(directory: Path, report: VerificationReport, *, export_record: bool = True,
                 reference: str | None = None) -> Path:
    """``verification.json``: every result, the images used and when (atomic write).

    ``export_record``: the check on the export's own images against the bundle's Keras model,
    replacing the results it repeats. Other checks (``clf verify --data`` or ``--reference``)
    go to ``other_checks``, so a later plain ``clf verify`` still checks the export's images."""
    path = Path(directory) / VERIFICATION_FILE
    previous = _read_record(path)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results = {n: asdict(r) for n, r in report.results.items()}
    others: list[Any] = previous["other_checks"] if isinstance(previous.get("other_checks"), list) else []
    if not export_record:
        check = {"checked_at": now, "source": report.source, "reference": reference,
                 "images": report.images, "results": results}
        return write_json(path, {"format": "clf-verification/1", **previous, "other_checks": [*others, check]})
    earlier: dict[str, Any] = previous["results"] if isinstance(previous.get("results"), dict) else {}
    return write_json(path, {
        "format": "clf-verification/1",
        "checked_at": now,
        "float_tolerance": FLOAT_TOLERANCE,
        "min_quantized_agreement": MIN_QUANTIZED_AGREEMENT,
        "source": report.source,
        "images": report.images,
        "results": {**earlier, **results},
        **({"other_checks": others} if others else {}),
    })


def verify_exports(reference_fn: BatchFn, labels: dict[str, Any], artifacts: dict[str, list[Path]],
                   exporters: dict[str, Any], images: np.ndarray, image_files: Sequence[str], source: str,
                   reference_probs: np.ndarray | None = None,
                   outputs: dict[str, np.ndarray] | None = None, *, models: dict[str, Any] | None = None,
                   photo_probs: Callable[[list[str]], np.ndarray | None] | None = None,
                   identical: set[str] | None = None) -> VerificationReport:
    """Reopen every artifact whose exporter can load it and compare with the forward
    ``reference_fn`` (``clf.infer.forward.batch_fn``); failed artifacts are quarantined.

    ``exporters``: name -> ``Exporter``; ones without ``load`` are skipped. Float artifacts
    are compared on the first ``FLOAT_CHECK_IMAGES`` images, quantized ones on all.
    ``reference_probs``: the model's probabilities on ``images``, when known. ``outputs``: an
    artifact's outputs on ``images`` already computed from the same file (not run again).
    ``models``: name -> the in-memory model that exporter wrote; a file its exporter's ``holds``
    proves identical to it passes without being reopened (``method`` "identical").
    ``photo_probs(files)``: the reference's outputs on photos decoded in full, when known cheaply
    (None: computed). ``identical``: ``proven_identical``'s answer when the caller has it."""
    report = VerificationReport(images=list(map(str, image_files)), source=source, images_array=images,
                                outputs=dict(outputs or {}))
    if identical is None:
        identical = proven_identical(artifacts, exporters, models)
    for name in identical:
        report.results[name] = Verification(
            name, Path(artifacts[name][0]).name, "tensorflow", "none", 0, 0.0, 1.0,
            "the file holds the in-memory model, its config and every weight equal",
            True, known_agreement=1.0 if labels.get("unknown") else None, method="identical")
    to_run = {name: files for name, files in artifacts.items() if name not in identical}
    # No images decoded (every artifact proven identical): the files alone give the test vectors.
    photos = client_files(list(map(str, image_files)), len(images) if len(images) else len(image_files))
    if not any(takes_photo(labels, name) for name in to_run):
        photos = photos[:TEST_VECTORS]  # no client check: only the test vectors need photos
    photo_reference = None
    if not to_run:
        reference = np.zeros((0, 0), np.float32)
    else:
        # Known: the engine's head output on cached features, so verifying costs no second backbone pass.
        reference = reference_probs if reference_probs is not None else in_batches(reference_fn, images)
    if photos and any(takes_photo(labels, name) for name in artifacts):
        # Decoded in full like the client path (held-out images may be DCT-scaled decodes).
        size = ImageSize(labels["input_size"], float(labels.get("resize", {}).get("center_crop", 0.0)))
        photo_reference = photo_probs(photos) if photo_probs is not None else None
        if photo_reference is None:
            photo_reference = in_batches(reference_fn, Decoder(size).batch(photos))
        report.reference_probs = photo_reference
    for name, files in to_run.items():
        exporter = exporters[name]
        if exporter.load is None or not files:
            continue
        try:
            predictor = exporter.load(Path(files[0]), labels)
            # Keras formats run in the reference's own runtime: a few images show any difference.
            n = len(images) if getattr(predictor, "quantization", "none") != "none" or name not in KERAS_FORMATS \
                else min(len(images), FLOAT_CHECK_IMAGES)
            sample, expected = images[:n], reference[:n]
            if eight_bit(predictor):
                sample = np.clip(np.round(sample), 0, 255)
                expected = in_batches(reference_fn, sample)
            result = verify_predictor(name, predictor, sample, expected, report.outputs)
            report.predictors[name] = predictor
            if photo_reference is not None and takes_photo(labels, name):
                check_client(result, predictor, photos, photo_reference)
        except Exception as exc:  # a runtime that cannot even open it is a failed check
            result = Verification(name, Path(files[0]).name, "unknown", "unknown", len(images),
                                  float("inf"), 0.0, f"reopens without error ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200] if str(exc) else ''})", False)
        report.results[name] = result
        if not result.passed:
            quarantine(files)
    return report


def proven_identical(artifacts: dict[str, list[Path]], exporters: dict[str, Any],
                     models: dict[str, Any] | None) -> set[str]:
    """The artifacts whose exporter's ``holds`` proves the file is the in-memory model it was
    written from (``models``: name -> that model); the rest must be reopened and run."""
    proven = set()
    for name, files in artifacts.items():
        holds, model = getattr(exporters[name], "holds", None), (models or {}).get(name)
        if files and holds is not None and model is not None and holds(Path(files[0]), model):
            proven.add(name)
    return proven


def verify_artifact(artifact: str | Path, *, data: Sequence[str | Path] | None = None,
                    reference: str | Path | None = None, host: PluginHost | None = None,
                    trust_artifact: bool = False) -> VerificationReport:
    """``clf verify``: reopen ``artifact`` and compare it with the bundle's Keras model.

    ``reference`` defaults to the bundle's ``.keras`` (else ``.h5``) model; ``data`` to the
    images ``verification.json`` recorded at export. Nothing is renamed: the result is
    recorded (see ``write_report``) and returned."""
    artifact = Path(artifact)
    folder, exporter_name, _ = resolve_artifact(artifact)
    labels = read_labels(folder)
    predictor = load_predictor(artifact, host, trust=trust_artifact)
    ref_path = Path(reference) if reference else keras_model_in(folder, labels, (
        "(.keras or .h5) to compare against; expected a bundle exported with keras or h5 too. "
        "Pass --reference MODEL (a clf .keras or .h5 file)."))
    ref = load_predictor(ref_path, host, trust=trust_artifact)
    files, source = (([str(f) for f in collect_images(data)], "--data") if data
                     else _recorded_images(folder))
    if not files:
        raise DataError(f"No images to verify {str(artifact)!r} on; expected image files under --data. "
                        f"Pass --data with a folder of held-out images.")
    images = predictor.decoder.batch(files)  # as clf predict decodes them
    if eight_bit(predictor):
        images = np.clip(np.round(images), 0, 255)
    reference_probs = in_batches(ref.predict_batch, images)
    report = VerificationReport(images=files, source=source, reference_probs=reference_probs)
    result = verify_predictor(exporter_name, predictor, images, reference_probs)
    if takes_photo(labels, exporter_name):
        photos = client_files(files, len(images))
        check_client(result, predictor, photos, reference_probs[:len(photos)])
    report.results[exporter_name] = result
    # Other images or another reference: recorded beside the export's record, never over it.
    write_report(folder, report, export_record=not data and reference is None,
                 reference=str(ref_path) if reference is not None else None)
    return report


def keras_model_in(folder: Path, labels: dict, missing: str) -> Path:
    """The bundle's Keras model as labels.json lists it, .keras before .h5; else a ModelError
    ending in ``missing`` (what it was wanted for, and the fix)."""
    exports: dict[str, list[str]] = labels.get("artifacts", {})
    for name in ("keras", "h5"):
        files = exports.get(name)
        if files and (Path(folder) / files[0]).exists():
            return Path(folder) / files[0]
    raise ModelError(f"{str(folder)!r} has no Keras model {missing}")


def _recorded_images(folder: Path) -> tuple[list[str], str]:
    path = folder / VERIFICATION_FILE
    data = _read_record(path)
    images = data.get("images", [])
    if not isinstance(images, list):
        return [], ""
    # Only inside the run's data folder (manifest.json), else the bundle folder; never elsewhere.
    recorded = read_manifest(folder, required=False).get("data", {}).get("source")
    root = Path(recorded) if recorded else folder
    files = []
    for name in images:
        # Relative names are relative to where the run ran, like the data folder's own name.
        where = name if not isinstance(name, str) or os.path.isabs(name) else os.path.join(os.getcwd(), name)
        try:
            image = inside_folder(root, where, str(path))
        except DataError as exc:
            if not recorded:  # a bundle moved away from its run: nothing edited, its images elsewhere
                continue
            raise DataError(f"{exc} Or pass --data with a folder of held-out images.") from None
        if image.is_file():
            files.append(str(image))
    return files, str(data.get("source", ""))
