"""Unknown-photo rejection: a score of how much a photo's pooled features look like the
training images' (``clf.data.preprocessing.KnownScore``), with a threshold calibrated on the
known training images alone: each scored by statistics fitted without its fold, the threshold
accepts ``accept_known`` of them. The score becomes an extra output column of the exported
model, so every runtime reaches the same decision. Which score and why: docs/unknown.md,
measured by benchmarks/unknown.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from clf.errors import ConfigError, DataError
from clf.events import Observer
from clf.train import linear_head

if TYPE_CHECKING:
    from clf.data.loading import LoadedData
    from clf.data.preprocessing import KnownScore
    from clf.train.extraction import Extracted
    from clf.train.fit import Fitted, Trainable
    from clf.train.model import Classifier
    from clf.train.setup import Setup

# Scores that read the head's logits need the solved linear head (its folds re-solve at its L2).
HEAD_KINDS = ("vim", "energy", "max-softmax")
VIM_DIM = 128  # principal axes ViM keeps, at most half the training images (benchmarks/unknown.py)
FOLDS = 5


@dataclass
class KnownFit:
    layer: KnownScore  # the calibrated score, built on the pooled features
    record: dict[str, Any]  # labels.json's and the manifest's "unknown"
    oof: np.ndarray  # out-of-fold raw scores of the clean training images
    validation: np.ndarray | None  # raw scores of the validation images


def choose_kind(requested: str, *, solved: bool, cached: bool) -> tuple[str | None, str]:
    """``(score kind or None, why)`` for ``--unknown requested``; a ConfigError when an
    explicit score cannot work with this run."""
    if requested == "off":
        return None, "off (--unknown off)"
    if not cached:
        why = ("it needs the frozen backbone's cached features, and this run trains or fine-tunes the "
               "backbone, which changes them")
        if requested == "auto":
            return None, f"off: {why}"
        raise ConfigError(f"--unknown {requested} cannot be calibrated: {why}. Expected a frozen backbone "
                          f"(no --fine-tune-layers, a pretrained backbone). Drop --fine-tune-layers, or pass "
                          f"--unknown off.")
    if requested == "auto":
        return ("vim", "the solved linear head") if solved else ("maha", "a head other than the solved linear one")
    if requested in HEAD_KINDS and not solved:
        raise ConfigError(f"--unknown {requested} reads the solved linear softmax head's logits, but this run's "
                          f"head is not one (--hidden-units, --solver keras or a plugin's head). Expected the "
                          f"default head. Pass --unknown maha (feature distance, any head) or --unknown auto.")
    return requested, f"--unknown {requested}"


def head_statistics(kind: str, z: np.ndarray, kernel: np.ndarray, bias: np.ndarray, dim: int) -> dict[str, Any]:
    """``KnownScore`` weights for a head score on head inputs ``z`` (float64)."""
    stats: dict[str, Any] = {"kernel": kernel, "bias": bias, "dim": 0, "alpha": 0.0}
    if kind != "vim":
        return stats
    origin = -np.linalg.pinv(kernel.T) @ bias  # where every logit is zero
    axes = _principal_axes(z - origin, dim)
    centred = z - origin
    residual = np.linalg.norm(centred - (centred @ axes) @ axes.T, axis=1)
    top = (z @ kernel + bias).max(axis=1)
    alpha = float(top.mean() / residual.mean()) if residual.mean() > 0 else 0.0
    return {**stats, "origin": origin, "axes": axes, "dim": axes.shape[1], "alpha": alpha}


def _principal_axes(centred: np.ndarray, dim: int) -> np.ndarray:
    """The top ``dim`` principal axes ``[d, dim]`` of the rows (the n x n Gram matrix when smaller)."""
    n, d = centred.shape
    if n < d:
        values, vectors = np.linalg.eigh(centred @ centred.T)
        order = np.argsort(values)[::-1][:dim]
        order = order[values[order] > max(values.max(initial=0.0), 1e-300) * 1e-12]
        return centred.T @ (vectors[:, order] / np.sqrt(values[order]))
    values, vectors = np.linalg.eigh(centred.T @ centred)
    return vectors[:, np.argsort(values)[::-1][:dim]]


def maha_statistics(z: np.ndarray, labels: np.ndarray, classes: int, shrinkage: float | None) -> dict[str, Any]:
    """``KnownScore`` weights for ``maha``: class means and one shared Ledoit-Wolf covariance,
    its inverse kept as ``precision`` along the centred sample's principal ``axes`` and
    ``alpha = 1 / floor`` off them. ``shrinkage``: a fold keeps the full fit's
    intensity (a fold's own estimate shifts the scale of its scores)."""
    means = np.stack([z[labels == c].mean(axis=0) for c in range(classes)])
    xc = z - means[labels]
    n, d = xc.shape
    sq = np.einsum("ij,ij->i", xc, xc)
    small = n <= d
    values, vectors = np.linalg.eigh(xc @ xc.T if small else xc.T @ xc)
    frob2 = float(np.sum(values ** 2))  # |X'X|_F^2 = |XX'|_F^2
    keep = values > max(values.max(initial=0.0), 1e-300) * 1e-12
    basis = xc.T @ (vectors[:, keep] / np.sqrt(values[keep])) if small else vectors[:, keep]
    values = values[keep] / n
    if shrinkage is None:  # sklearn.covariance.ledoit_wolf_shrinkage, from the row norms
        mu = sq.sum() / (n * d)
        beta = (np.sum(sq * sq) / n - frob2 / n ** 2) / (d * n)
        delta = (frob2 / n ** 2 - 2.0 * mu * sq.sum() / n + d * mu ** 2) / d
        shrinkage = 0.0 if beta == 0 or delta == 0 else min(beta, delta) / delta
    floor = max(shrinkage * sq.sum() / (n * d), 1e-12)
    return {"means": means, "axes": basis, "precision": 1.0 / ((1 - shrinkage) * values + floor),
            "dim": basis.shape[1], "alpha": 1.0 / floor, "shrinkage": shrinkage}


def make_layer(kind: str, classes: int, width: int, stats: dict[str, Any], center: np.ndarray, spread: np.ndarray,
               threshold: float = 0.0, scale: float = 1.0) -> KnownScore:
    """A built ``KnownScore`` holding ``stats``."""
    from clf.data.preprocessing import KnownScore

    layer = KnownScore(kind, classes, stats["dim"], name="known_score")
    layer.build((None, width))
    names = ("kernel", "bias", "means", "precision", "axes", "origin")
    values: dict[str, Any] = {k: stats[k] for k in names if k in stats}
    values.update(center=center, spread=spread, calibration=[stats["alpha"], threshold, scale])
    for name, value in values.items():
        getattr(layer, name).assign(np.asarray(value, np.float32))
    return layer


def raw_scores(layer: KnownScore, features: np.ndarray) -> np.ndarray:
    """``layer``'s raw score per row, computed by the layer itself (what every export runs)."""
    import keras

    out = [keras.ops.convert_to_numpy(layer.score(features[i:i + 1024])) for i in range(0, len(features), 1024)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def calibrate(kind: str, features: np.ndarray, labels: np.ndarray, classes: int, *, center: np.ndarray,
              spread: np.ndarray, accept_known: float, head: tuple[np.ndarray, np.ndarray] | None = None,
              l2: float | None = None, class_weight: dict[int, float] | None = None,
              dim: int = VIM_DIM) -> tuple[KnownScore, np.ndarray, dict[str, Any]]:
    """``(calibrated layer, out-of-fold raw scores, parameters)`` from the known training images
    only: the threshold is the ``1 - accept_known`` quantile of their out-of-fold scores, each
    from statistics fitted without its fold as the full fit is (head scores: a head re-solved at
    the full head's ``l2``; ViM: as many axes per image; maha: the full fit's shrinkage)."""
    counts = np.bincount(labels, minlength=classes)
    folds = int(min(FOLDS, counts.min()))
    if folds < 2:
        raise DataError(
            f"Calibrating the unknown-photo threshold needs at least 2 training images in every class "
            f"(out-of-fold scores); class {int(counts.argmin())} has {int(counts.min())}. Add images, or "
            f"pass --unknown off.")
    z = (np.asarray(features, np.float64) - center) / spread
    n, width = z.shape

    def statistics(rows: np.ndarray, full: dict[str, Any] | None) -> dict[str, Any]:
        if kind == "maha":
            return maha_statistics(z[rows], labels[rows], classes, None if full is None else full["shrinkage"])
        if full is None:
            assert head is not None
            kernel, bias = head
        else:  # a fold's own head, as the full one was solved
            solved = linear_head.solve_at(z[rows], labels[rows], classes, float(l2 or linear_head.DEFAULT_L2),
                                          class_weight=class_weight)
            kernel, bias = solved.kernel, solved.bias
        axes = dim if full is None else max(1, round(full["dim"] * rows.sum() / n))
        return head_statistics(kind, z[rows], kernel, bias, min(axes, int(rows.sum()) - 1))

    everything = np.ones(n, bool)
    full = statistics(everything, None)
    fold = linear_head.stratified_folds(labels, folds)
    oof = np.zeros(n)
    for f in range(folds):
        held = fold == f
        layer = make_layer(kind, classes, width, statistics(~held, full), center, spread)
        oof[held] = raw_scores(layer, np.asarray(features, np.float32)[held])
    threshold = float(np.quantile(oof, 1.0 - accept_known))
    scale = float(np.std(oof)) or 1.0
    params = {"dim": int(full["dim"]), "alpha": float(full["alpha"]), "folds": folds}
    if kind == "maha":
        params["shrinkage"] = float(full["shrinkage"])
    return make_layer(kind, classes, width, full, center, spread, threshold, scale), oof, params


def attach(classifier: Classifier, layer: KnownScore) -> Classifier:
    """The classifier whose model outputs the class probabilities and then the known score, one
    column more; the backbone, ``head`` and the probabilities are unchanged."""
    import keras

    from clf.train.model import join

    features = keras.Input(shape=(int(classifier.backbone.output_shape[-1]),), name="features")
    outputs = keras.layers.Concatenate(name="outputs")([classifier.head(features), layer(features)])
    joined = join(classifier.backbone, keras.Model(features, outputs, name="head"), classifier.preprocess,
                  classifier.model.input_shape[1:3], tta=classifier.tta)
    return replace(joined, head=classifier.head, known=layer)


def score_inputs(kind: str, layers: tuple[Any, Any] | None, features: np.ndarray
                 ) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray, np.ndarray]:
    """``(head kernel and bias or None, center, spread)``: what ``calibrate`` scores with. Head
    scores read the linear head (``linear_head.linear_layers``) on its own standardised input;
    ``maha`` scales the features by their training RMS, as the head's input is."""
    width = features.shape[1]
    if layers is None or kind not in HEAD_KINDS:
        return None, np.zeros(width), np.full(width, float(np.sqrt(np.mean(np.square(features, dtype=np.float64))))
                                              or 1.0)
    standardize, dense = layers
    head = (np.asarray(dense.kernel.numpy(), np.float64), np.asarray(dense.bias.numpy(), np.float64))
    if standardize is None:
        return head, np.zeros(width), np.ones(width)
    return head, np.asarray(standardize.mean.numpy(), np.float64), np.asarray(standardize.std.numpy(), np.float64)


def detach(head: Any) -> tuple[Any, KnownScore | None]:
    """``(class head, known-score layer or None)`` of a head ``attach`` built (reloaded too)."""
    from clf.data.preprocessing import KnownScore

    known = [layer for layer in head.layers if isinstance(layer, KnownScore)]
    if not known:
        return head, None
    inner = [layer for layer in head.layers if hasattr(layer, "layers")]
    return inner[0], known[0]


def fit_unknown(setup: Setup, data: LoadedData, trainable: Trainable, extracted: Extracted | None, fitted: Fitted,
                observer: Observer) -> KnownFit | None:
    """The unknown phase: choose the score, calibrate it on the training images' features, and
    attach it to ``trainable.classifier`` (None: off, the reason in nothing but the record)."""
    config = setup.config
    layers = linear_head.linear_layers(trainable.head_model)
    solved = layers is not None and fitted.info.get("solver") == "lbfgs"
    cached = trainable.train_features is not None and not config.fine_tune_layers
    kind, why = choose_kind(config.unknown, solved=solved, cached=cached)
    if kind is None:
        return None
    assert trainable.train_features is not None
    n = trainable.n_clean or len(trainable.train_features.labels)
    features, labels = trainable.train_features.features[:n], trainable.train_features.labels[:n]
    classes = data.bundle.num_classes
    counts = np.bincount(labels, minlength=classes)
    if counts.min() < 2 and config.unknown == "auto":
        return None  # too few images to calibrate; an explicit --unknown gets calibrate's DataError
    observer.phase_start("unknown")
    t0 = time.perf_counter()
    head, center, spread = score_inputs(kind, layers, features)
    layer, oof, params = calibrate(kind, features, labels, classes, center=center, spread=spread,
                                   accept_known=config.accept_known, head=head, l2=fitted.info.get("l2"),
                                   class_weight=fitted.class_weight, dim=min(VIM_DIM, n // 2))
    val = extracted["validation"] if extracted is not None else None
    threshold = float(layer.calibration.numpy()[1])
    validation = raw_scores(layer, val.features) if val is not None and len(val.labels) else None
    record: dict[str, Any] = {
        "output": "known_score", "column": classes, "threshold": 0.5, "score": kind,
        "rule": "known when known_score >= threshold; known_score = sigmoid((score - score_threshold) / scale)",
        "score_threshold": threshold, "scale": float(layer.calibration.numpy()[2]),
        "accept_known": config.accept_known, "chosen": why, "params": params,
        "training_accepted": float(np.mean(oof >= threshold)),
    }
    if validation is not None:
        record["validation_accepted"] = float(np.mean(validation >= threshold))
    trainable.classifier = attach(trainable.classifier, layer)
    seconds = time.perf_counter() - t0
    accepted = (f"; validation images accepted: {record['validation_accepted']:.1%}"
                if validation is not None else "")
    observer.phase_end("unknown", seconds=seconds, record=record, summary=(
        f"{kind} score ({why}); its threshold accepts {config.accept_known:.0%} of the training images out of "
        f"fold{accepted}"))
    return KnownFit(layer, record, oof, validation)
