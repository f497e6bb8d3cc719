"""Backbone selection (``clf run --backbone a,b,c --folds K``): each backbone's features are
extracted (or read from the cache), its head fitted as a run fits it, and the K-fold scores
of ``clf.train.crossval`` computed, exactly as ``clf run --folds K`` would for that backbone.
The best mean accuracy wins (ties: the one named first) and is trained and exported as an
ordinary run, whose folder also gets the leaderboard (``sweep.json``, ``leaderboard.png``).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clf.config import RunConfig
from clf.data import guardrails
from clf.data.loading import load_data
from clf.errors import ConfigError
from clf.events import Observer
from clf.files import write_json
from clf.host.manager import PluginHost, get_host
from clf.report.plots import plot_leaderboard
from clf.train.distribute import distribution
from clf.train.engine import (RunResult, build_backbone_phase, cross_validate_phase,
                              run)
from clf.train.extraction import extract_features
from clf.train.fit import assemble, fit_head
from clf.train.setup import resolve

FORMAT = "clf-sweep/1"


@dataclass
class SweepResult:
    leaderboard: list[dict[str, Any]]  # best first: backbone, accuracy and macro_f1 (mean, low, high), ...
    best: str
    result: RunResult  # the best backbone's run, exported
    files: list[Path] = field(default_factory=list)


def backbone_names(value: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``."""
    return [name.strip() for name in value.split(",") if name.strip()]


def sweep(config: RunConfig, backbones: list[str], observer: Observer | None = None,
          host: PluginHost | None = None) -> SweepResult:
    """Score each of ``backbones`` by ``config.folds``-fold cross-validation, then run the best."""
    observer = observer or Observer()
    host = host or get_host(config.plugins)
    _check(config, backbones, host)
    guardrails.check_output(config.output, config.force)  # before any slow work
    # Scoring records nothing: trackers (--track) follow the best backbone's run only.
    board = [score_backbone(config.replace(backbone=name, track=()), host, observer) for name in backbones]
    board.sort(key=lambda entry: -entry["accuracy"]["mean"])  # stable: ties keep the order given
    best = board[0]["backbone"]
    observer.note(f"Best backbone by {config.folds}-fold accuracy: {best}; training and exporting it.")
    result = run(config.replace(backbone=best), observer, host)
    record = {"format": FORMAT, "folds": config.folds, "seed": config.seed, "best": best,
              "interval": "95% Student t interval over the fold accuracies", "leaderboard": board}
    files = [write_json(result.run_dir / "sweep.json", record),
             plot_leaderboard(board, result.run_dir / "leaderboard.png", folds=config.folds)]
    return SweepResult(board, best, result, files)


def _check(config: RunConfig, backbones: list[str], host: PluginHost) -> None:
    if config.folds < 2:
        raise ConfigError(f"--backbone {','.join(backbones)} picks a backbone by K-fold cross-validation, but "
                          f"--folds is {config.folds}; expected --folds K with K >= 2. Pass e.g. --folds 5.")
    if len(backbones) < 2 or len(set(backbones)) != len(backbones):
        raise ConfigError(f"--backbone {','.join(backbones)}: expected two or more different backbone names to "
                          f"compare. Name each once.")
    if config.weights not in ("imagenet", "none"):
        raise ConfigError(f"--weights {config.weights!r} is one backbone's weights file, but --backbone names "
                          f"{len(backbones)}; expected imagenet or none when comparing backbones. Drop --weights "
                          f"(ImageNet weights) or compare one backbone per run with clf compare.")
    for name in backbones:
        host.backbones.get(name)  # a typo fails here, before any backbone is built


def score_backbone(config: RunConfig, host: PluginHost, observer: Observer) -> dict[str, Any]:
    """The run's phases up to its --folds scores, with nothing written (Keras fit's checkpoints
    go to a temporary folder)."""
    t0 = time.perf_counter()
    setup = resolve(config, host)
    dist = distribution(config.strategy, config.precision, config.batch_size)
    data = load_data(config, setup.loader, setup.image_size, observer)
    base = build_backbone_phase(setup, dist, observer)
    batch_size = guardrails.batch_size_for(config.batch_size, data.n_train, observer)
    extracted = extract_features(setup, data, base, dist, batch_size=batch_size, observer=observer)
    trainable = assemble(setup, data, base, extracted, dist, batch_size)
    with tempfile.TemporaryDirectory(prefix="clf-sweep-") as tmp:
        fitted = fit_head(setup, data, trainable, dist, ckpt=None, run_dir=Path(tmp), batch_size=batch_size,
                          observer=observer)
    report = cross_validate_phase(setup, data, trainable, extracted, fitted.info, observer)
    return {"backbone": setup.backbone.name, "image_size": list(setup.image_size),
            "features": int(base.output_shape[-1]), "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
            "folds": report["folds"], "images": report["images"], "heads": report["heads"], "l2": report["l2"],
            "seconds": round(time.perf_counter() - t0, 3)}
