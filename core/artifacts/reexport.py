"""``clf export RUN_DIR --export tflite,onnx``: more artifacts for a finished run, through a
run's export phase (``clf.artifacts.exporting.export_all``) and its round-trip check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence, TYPE_CHECKING

from clf.artifacts.exporting import check_export_options, export_all
from clf.artifacts.labels import check_artifact, read_labels
from clf.artifacts.verify import keras_model_in
from clf.config import MODEL_INPUTS, QUANTIZE_MODES, check_name
from clf.errors import DataError, ModelNotFoundError, UsageError, VerificationError
from clf.events import Observer
from clf.files import write_json
from clf.host.manager import get_host
from clf.artifacts.predict import KerasPredictor
from clf.data.images import DatasetBundle, ImageSize, Split, files_dataset
from clf.data.manifest import MANIFEST_FILE, split_files, read_manifest
from clf import __version__

if TYPE_CHECKING:
    from clf.host.manager import PluginHost


@dataclass
class Added:
    """What ``export`` added: exporter -> files, and the round-trip check's report."""

    run_dir: Path
    artifacts: dict[str, list[Path]]
    verification: Any = None  # clf.artifacts.verify.VerificationReport; None with verify=False


@dataclass
class _Options:  # what export_all and check_export_options read of a RunConfig
    export: tuple[str, ...]
    quantize: str
    verify: bool
    model_input: str = "photo"


def export(run_dir: str | Path, export: str | Sequence[str], *, quantize: str = "none",
           data: str | Path | None = None, verify: bool = True, observer: Observer | None = None,
           host: PluginHost | None = None, model_input: str = "photo", trust_artifact: bool = False) -> Added:
    """Add the artifacts of ``export`` (exporter names) to the finished run in ``run_dir``.

    Everything cheap is checked first: the run folder, its Keras model and sha256
    (``trust_artifact``: as ``clf predict --trust-artifact``), the exporter names and
    packages, ``quantize``, and formats the run already has. A file the run did not write is
    never replaced. Raises ``VerificationError`` when an artifact fails its round trip
    (renamed ``*.failed``; the others are kept)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModelNotFoundError(f"Run folder {str(run_dir)!r} does not exist; expected a folder a "
                                 f"'clf run' wrote. Check the path.")
    labels = read_labels(run_dir)
    names = tuple(n.strip() for n in export.split(",") if n.strip()) if isinstance(export, str) else tuple(export)
    if not names:
        raise UsageError("Nothing to export; expected exporter names, e.g. --export tflite,onnx. "
                         "Run 'clf exporters' to list them.")
    host = host or get_host()
    exporters = [host.exporters.get(n) for n in names]
    options = _Options(tuple(e.name for e in exporters), check_name("quantize", quantize, QUANTIZE_MODES), verify,
                       check_name("model-input", model_input, MODEL_INPUTS))
    check_export_options(options, exporters)
    have = labels.get("artifacts", {})
    present = [f"{e.name} ({', '.join(have[e.name])})" for e in exporters if have.get(e.name)]
    if present:
        raise UsageError(
            f"Run folder {str(run_dir)!r} already has {', '.join(present)}; clf export adds "
            f"formats a run lacks and never replaces an artifact. Drop it from --export (to "
            f"re-check an artifact: clf verify), or train again with the --export and --quantize "
            f"you want."
        )
    source = keras_model_in(run_dir, labels, (  # the source of every new artifact
        f"(model.keras or model.h5) to export from; its labels.json lists: "
        f"{', '.join(have) or 'nothing'}. Expected a run exported with h5 or keras "
        f"(clf run's default is h5)."))

    check_artifact(source, labels, trust_artifact)  # as clf predict: a swapped model is not exported
    bundle = _bundle(run_dir, labels, data, need_train=options.quantize == "int8", need_held_out=verify)
    model = KerasPredictor(source, labels).model
    from clf.data.fitting import check_input_size

    check_input_size(model, labels["input_size"], str(run_dir / "labels.json"))
    observer = observer or Observer()
    metadata = dict(labels)
    try:
        # Staged, replacing no file: the formats the run has were refused above.
        artifacts, report = export_all(model, run_dir, metadata, exporters, options, bundle,
                                       observer, staged=True)
    except VerificationError:
        _record(run_dir, read_labels(run_dir), options)  # labels.json lists what passed
        raise
    _record(run_dir, metadata, options)
    return Added(run_dir, artifacts, report)


def _bundle(run_dir: Path, labels: dict[str, Any], data: str | Path | None, *, need_train: bool,
            need_held_out: bool) -> DatasetBundle:
    """The run's own images by split (as its manifest.json records), to calibrate and verify on."""
    manifest = read_manifest(run_dir, required=False)
    class_names = list(labels["class_names"])
    root = Path(data) if data is not None else Path(manifest.get("data", {}).get("source", ""))
    size = ImageSize(labels["input_size"], float(labels.get("resize", {}).get("center_crop", 0.0)))
    splits: dict[str, Split] = {}
    recorded = split_files(manifest, class_names, root, run_dir / MANIFEST_FILE)
    for split, (paths, labels_of, _) in recorded.items():
        present = [(str(p), label) for p, label in zip(paths, labels_of) if p.is_file()]
        if present:
            splits[split] = Split([p for p, _ in present], [label for _, label in present])
    held_out = [s for s in ("test", "validation") if s in splits]
    wanted = (["train"] if need_train and "train" not in splits else []) + \
        (["a validation or test split"] if need_held_out and not held_out else [])
    if wanted:
        raise DataError(
            f"The images of run {str(run_dir)!r} are not under {str(root)!r} (looked for the "
            f"{' and '.join(wanted)} files its manifest.json records); expected the run's --data "
            f"folder. Pass --data with that folder"
            + (", or --no-verify to skip the round-trip check." if not need_train else ".")
        )

    # A split the run did not have stays None (train: only int8 calibration reads it).
    made = {s: files_dataset(splits[s].files, splits[s].labels, size) if s in splits else None
            for s in ("train", "validation", "test")}
    return DatasetBundle(class_names, made["train"], made["validation"], made["test"], splits=splits,
                         make_dataset=lambda files, targets: files_dataset(files, targets, size))


def _record(run_dir: Path, metadata: dict, options: _Options) -> None:
    """manifest.json lists the artifacts labels.json lists, and when each export was added."""
    manifest = read_manifest(run_dir, required=False)
    if not manifest:
        return
    manifest["artifacts"] = metadata.get("artifacts", {})
    if metadata.get("verification") is not None:
        manifest["verification"] = metadata["verification"]
    if metadata.get("quantization_variant"):
        manifest["quantization_variant"] = metadata["quantization_variant"]
    manifest.setdefault("exports_added", []).append({
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "export": list(options.export),
        "quantize": options.quantize, "verified": options.verify, "clf_version": __version__})
    write_json(run_dir / MANIFEST_FILE, manifest)
