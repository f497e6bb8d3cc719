"""The setup phase: everything a run is made of, resolved before any slow work, so a typo
or unusable option fails in milliseconds. ``clf run --dry-run`` (``plan``) runs this same
phase and the data phase, then stops.
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clf.artifacts.exporting import check_export_options
from clf.config import RunConfig, config_to_toml
from clf.data import guardrails
from clf.data.images import ImageSize
from clf.data.loading import load_data
from clf.errors import ConfigError, PluginError, UsageError, WeightsNotFoundError
from clf.events import Observer
from clf.host.manager import PluginHost, get_host
from clf.data.modes import preprocess_modes

if TYPE_CHECKING:
    from clf.host.registry import Backbone, DataLoader, Exporter, Head


@dataclass
class Setup:
    """The resolved components of one run: what ``config`` names, looked up and checked."""

    config: RunConfig
    host: PluginHost
    backbone: Backbone
    head: Head
    loader: DataLoader
    exporters: list[Exporter]
    image_size: ImageSize

    @property
    def head_options(self) -> dict[str, Any]:
        return {"dropout": self.config.dropout, "hidden_units": self.config.hidden_units}


def resolve(config: RunConfig, host: PluginHost) -> Setup:
    """Look up every named component and check the options that depend on them."""
    backbone = host.backbones.get(config.backbone)
    head, loader = host.heads.get(config.head), host.loaders.get(loader_name(config))
    exporters = [host.exporters.get(name) for name in config.export]
    check_export_options(config, exporters)
    check_weights_path(config)
    check_preprocess(backbone)
    check_unknown(config, backbone, head)
    setup = Setup(config, host, backbone, head, loader, exporters, image_size_for(config, backbone))
    check_folds_and_trackers(setup)
    return setup


def loader_name(config: RunConfig) -> str:
    """The loader: ``--loader``, except that a labels file (.csv, .jsonl) given to the default
    folder loader goes to ``labels_file``."""
    from clf.data.labels_file import is_labels_file

    return "labels_file" if config.loader == "directory" and is_labels_file(config.data) else config.loader


def check_folds_and_trackers(setup: Setup) -> None:
    """--folds needs cached features; each --track name must be a registered callback plugin."""
    config = setup.config
    if config.folds and setup.backbone.trainable:
        raise ConfigError(
            f"--folds {config.folds} scores heads on cached backbone features, but backbone "
            f"{setup.backbone.name!r} is trained with the head (no features are cached). Drop --folds, "
            f"or pick a pretrained backbone (see 'clf backbones')."
        )
    for name in config.track:
        tracker = setup.host.callbacks.get(name)  # an unknown tracker is an error naming the known ones
        missing = [m for m in tracker.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"--track {name} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                f"installed; expected every package a tracker needs before anything runs. Install "
                f"{'it' if len(missing) == 1 else 'them'} ({tracker.install or 'pip install ' + ' '.join(missing)}) "
                f"or drop --track {name}."
            )


def check_unknown(config: RunConfig, backbone: Backbone, head: Any) -> None:
    """An explicit --unknown score this run cannot calibrate fails now, not after training
    (the unknown phase decides again with what training did)."""
    from clf.train.fit import SOLVABLE_HEADS
    from clf.train.unknown import choose_kind

    solvable = config.solver == "auto" and not config.hidden_units and (head.plugin, head.name) in SOLVABLE_HEADS
    choose_kind(config.unknown, solved=solvable, cached=not backbone.trainable and not config.fine_tune_layers)


def plan(config: RunConfig, host: PluginHost | None = None,
         observer: Observer | None = None) -> dict[str, Any]:
    """``clf run --dry-run``: the effective TOML and a dataset summary, or the error the real
    run would raise first (the same ``resolve`` and ``load_data`` as ``clf.run``)."""
    setup = resolve(config, host or get_host(config.plugins))
    data = load_data(config, setup.loader, setup.image_size, observer or Observer())
    head = setup.head.name
    if data.bundle.multilabel:
        from clf.train.multilabel import check, head_for

        check(config, data.bundle, setup.backbone)
        head = f"{head_for(setup).name} (multi-label)"
    return {"toml": config_to_toml(config), "backbone": setup.backbone.name,
            "head": head, "loader": setup.loader.name,
            "exporters": [e.name for e in setup.exporters], "image_size": list(setup.image_size),
            "class_names": data.bundle.class_names, "counts": data.counts,
            "images": {name: len(s) for name, s in data.bundle.splits.items()}}


def check_preprocess(backbone: Backbone) -> None:
    """The backbone's preprocessing mode exists (a plugin may name one it never registered)."""
    if backbone.preprocess not in preprocess_modes():
        raise PluginError(
            f"Backbone {backbone.name!r} (plugin {backbone.plugin!r}) uses preprocessing mode "
            f"{backbone.preprocess!r}, which no plugin registered; expected one of "
            f"{', '.join(preprocess_modes())}. Fix the plugin: register the mode with "
            f"clf.register_preprocess, or pass preprocess= a function."
        )


def check_weights_path(config: RunConfig) -> None:
    """A --weights file that is not there fails now, not after the data is loaded."""
    if config.weights not in ("imagenet", "none") and Path(config.weights).is_dir():
        raise WeightsNotFoundError(
            f"Weights file {config.weights!r} is a folder; expected a weights file (.h5, "
            f".weights.h5) for backbone {config.backbone!r}. Pass the file inside it with --weights."
        )
    if config.weights not in ("imagenet", "none") and not Path(config.weights).is_file():
        raise WeightsNotFoundError(
            f"Weights file {config.weights!r} does not exist; expected 'imagenet', 'none' or "
            f"the path of a weights file for backbone {config.backbone!r}. Check --weights."
        )


def image_size_for(config: RunConfig, backbone: Backbone) -> ImageSize:
    """The input size, carrying the run's centre crop to every loader and decoder."""
    size = ImageSize((config.image_size, config.image_size) if config.image_size else backbone.input_size,
                     config.center_crop)
    if min(size) < backbone.min_size:
        raise ConfigError(
            f"--image-size {min(size)} is below the minimum of {backbone.min_size} pixels for "
            f"backbone {backbone.name!r}; expected >= {backbone.min_size} (default "
            f"{backbone.input_size[0]}). Pass a larger --image-size."
        )
    return size


def open_run_dir(config: RunConfig, *, chief: bool, resume_from: Path | None) -> Path:
    """The folder this process writes: the resumed run's, a new one (``--output`` or
    ``runs/<timestamp>-<backbone>``, never an existing folder), or a temporary one on a
    non-chief worker (which must still run every step)."""
    if not chief:
        return Path(tempfile.mkdtemp(prefix="clf-worker-"))
    if resume_from is not None:
        return Path(resume_from)
    if config.output:
        path = Path(config.output)
        guardrails.check_output(config.output, config.force)
        if config.force:
            guardrails.replace_output(path)
        _mkdir(path, exist_ok=True, fix="Pass another --output.")
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{config.backbone}"
    path, n = base, 2
    # mkdir without exist_ok claims the name atomically: runs started in the same second get -2, -3, ...
    while not _mkdir(path, exist_ok=False, fix="Pass --output."):
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def _mkdir(path: Path, *, exist_ok: bool, fix: str) -> bool:
    """Create ``path``; False when it already exists (and ``exist_ok`` is off)."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise UsageError(
            f"Cannot create output folder {str(path)!r}: {exc.strerror}; expected a writable "
            f"location. {fix}"
        ) from None
