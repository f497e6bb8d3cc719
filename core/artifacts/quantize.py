"""The quantization fallback ladder: ``--quantize int8`` and ``dynamic`` try their variants in
order and keep the first whose outputs pass verification's bar on the held-out images.

int8: ``full`` (uint8 in and out) -> ``float-head`` (pooling, head and known score in float)
-> ``selective`` (also the layers TFLite's quantization debugger ranks worst in float) ->
``16x8`` (int16 activations) -> ``resolved-head`` (the head solved again on the int8
backbone's own features, then fully int8). dynamic: ``full`` -> ``resolved-head``. What each
promises: docs/export.md. ``CLF_QUANTIZE_FROM=<variant>`` starts the ladder there (tests,
debugging)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from clf.errors import ConfigError
from clf.infer.convert import describe_failure, to_tflite
from clf.infer.forward import in_batches
from clf.infer.runners import LiteRTRunner
from clf.artifacts.verify import compare, known_agreement

if TYPE_CHECKING:
    import keras

LADDERS = {"int8": ("full", "float-head", "selective", "16x8", "resolved-head"), "dynamic": ("full", "resolved-head")}
START_ENV = "CLF_QUANTIZE_FROM"
RESOLVE_IMAGES = 2000
# What each int8 variant takes (all give float32 out except full, uint8); labels.json "inputs"
VARIANT_INPUT = {"full": "uint8", "float-head": "uint8", "selective": "float32", "16x8": "float32",
                 "resolved-head": "uint8"}  # training images whose int8 features the head is solved again on

# images [n, h, w, 3] float32 and their class indices, in batches
TrainingData = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass
class Attempt:
    variant: str
    top1_agreement: float | None = None
    known_agreement: float | None = None
    passed: bool = False
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"{self.variant}: {self.error}"
        known = "" if self.known_agreement is None else f", known/unknown {self.known_agreement:.1%}"
        return f"{self.variant}: top-1 agreement {self.top1_agreement:.1%}{known}"


@dataclass
class Outcome:
    """Which variant a quantized export kept (the best one when none passed) and what was tried."""

    mode: str
    variant: str
    passed: bool
    tried: list[Attempt] = field(default_factory=list)
    outputs: np.ndarray | None = field(default=None, repr=False)  # the kept variant's, on the check images

    def record(self) -> dict[str, Any]:
        """For labels.json and manifest.json (``quantization_variant``)."""
        return {"mode": self.mode, "variant": self.variant, "passed": self.passed,
                "tried": [asdict(a) for a in self.tried]}

    def describe(self) -> str:
        tried = "; ".join(a.describe() for a in self.tried)
        if self.passed:
            return f"{self.mode} kept variant {self.variant} (tried {tried})"
        return f"{self.mode}: no variant passed (tried {tried}); kept the closest, {self.variant}, to be set aside"


def ladder(mode: str) -> tuple[str, ...]:
    """``mode``'s variants in the order tried, from ``CLF_QUANTIZE_FROM`` when set."""
    steps = LADDERS.get(mode, ("full",))
    start = os.environ.get(START_ENV, "").strip()
    if not start:
        return steps
    if start not in steps:
        raise ConfigError(f"{START_ENV}={start!r} is not a step of --quantize {mode}'s ladder; expected one of "
                          f"{', '.join(steps)}. Unset it or name one of them.")
    return steps[steps.index(start):]


@dataclass
class QuantizeCheck:
    """What the export phase hands a quantizing exporter: the held-out images, the Keras
    model's outputs on them and the labels record (its known score), plus training images
    for ``resolved-head``. ``outcome`` holds the last ``convert``'s result."""

    images: np.ndarray
    reference: np.ndarray
    labels: dict[str, Any]
    training: TrainingData | None = None
    outcome: Outcome | None = None

    def judge(self, variant: str, content: bytes, mode: str) -> tuple[Attempt, np.ndarray]:
        got = in_batches(LiteRTRunner(content).run, self.images)
        classes = len(self.labels.get("class_names", [])) or None
        _, agreement, passed = compare(self.reference, got, mode, classes=classes)
        known, same = known_agreement(self.labels, self.reference, got, mode)
        return Attempt(variant, agreement, known, passed and same), got

    def convert(self, model: "keras.Model", mode: str,
                representative_data: Callable[[], Iterable[np.ndarray]] | None) -> bytes:
        """The first of ``mode``'s variants that passes (else the closest); ``outcome`` says which."""
        best: tuple[float, bytes, np.ndarray] | None = None
        outcome = Outcome(mode, "", False)
        for variant in ladder(mode):
            try:
                content = convert_variant(model, mode, variant, representative_data, self.training)
                attempt, got = self.judge(variant, content, mode)
            except Exception as exc:  # a variant that cannot be built is skipped, and said so
                outcome.tried.append(Attempt(variant, error=describe_failure(exc)))
                continue
            outcome.tried.append(attempt)
            score = (attempt.top1_agreement or 0.0) + (attempt.known_agreement or 0.0)
            if best is None or attempt.passed or score > best[0]:
                best = (score, content, got)
                outcome.variant, outcome.outputs = variant, got
            if attempt.passed:
                outcome.passed = True
                break
        self.outcome = outcome
        if best is None:  # nothing could be built at all: the plain conversion's own error
            return to_tflite(model, mode, representative_data)
        return best[1]


def convert_variant(model: "keras.Model", mode: str, variant: str,
                    representative_data: Callable[[], Iterable[np.ndarray]] | None,
                    training: TrainingData | None) -> bytes:
    if variant == "resolved-head":
        if training is None:
            raise ConfigError("no training images to solve the head on")
        return to_tflite(resolved_model(model, mode, representative_data, training), mode, representative_data)
    return to_tflite(model, mode, representative_data, variant if mode == "int8" else "full")


def features_model(model: "keras.Model") -> "keras.Model":
    """``model`` up to the input of its ``head`` layer: images -> pooled features."""
    import keras

    head = model.get_layer("head")
    return keras.Model(model.inputs, head._inbound_nodes[0].input_tensors[0], name="clf_features")


def resolved_model(model: "keras.Model", mode: str, representative_data: Callable[[], Iterable[np.ndarray]] | None,
                   training: TrainingData) -> "keras.Model":
    """A copy of ``model`` whose linear head is solved again (``clf.train.linear_head.solve``)
    on the features of ``mode``'s quantized backbone, extracted once from training images. Its
    targets are the float model's own answers on those images, not their labels: what the
    quantized model must agree with."""
    import keras

    from clf.data.fitting import FitPhoto, fixed_model, is_photo_model, photo_model
    from clf.data.images import ImageSize
    from clf.infer.forward import batch_fn
    from clf.train.linear_head import head_inputs, linear_layers, solve, write
    from clf.train.unknown import detach

    if is_photo_model(model):  # solved on the classifier inside, then behind the same FitPhoto
        fit = next(layer for layer in model.layers if isinstance(layer, FitPhoto))
        return photo_model(resolved_model(fixed_model(model), mode, representative_data, training),
                           ImageSize(fit.size, fit.center_crop))
    backbone = LiteRTRunner(to_tflite(features_model(model), mode, representative_data))
    forward = batch_fn(model)
    features, targets = [], []
    for images, _ in training():
        features.append(in_batches(backbone.run, images))
        targets.append(np.asarray(forward(images))[:, :num_classes(model)].argmax(1))
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = linear_layers(detach(copy.get_layer("head"))[0])
    if layers is None:
        raise ConfigError("the head is not a linear softmax (only the linear head can be solved again)")
    standardize, dense = layers
    write(dense, solve(head_inputs(standardize, np.concatenate(features)), np.concatenate(targets),
                       num_classes(model)))
    return copy


def num_classes(model: "keras.Model") -> int:
    """The class columns of ``model``'s output (its linear head's width)."""
    from clf.train.linear_head import linear_layers
    from clf.train.unknown import detach

    layers = linear_layers(detach(model.get_layer("head"))[0])
    if layers is None:
        raise ConfigError("the head is not a linear softmax (only the linear head can be solved again)")
    return int(layers[1].kernel.shape[-1])

