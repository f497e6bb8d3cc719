"""Which artifact of a run folder answers ``clf predict``, ``evaluate`` and ``serve`` by default: the
first float artifact in ``TENSORFLOW_FREE`` order that export verification passed and whose runtime is
installed, so a prediction starts in a fraction of TensorFlow's import time (benchmarks/predict_cold.py).
Anything else (no such artifact, a damaged one) leaves the first listed artifact, in TensorFlow, with a
note saying why. ``--runtime openvino`` picks among ``OPENVINO_SOURCES`` the same way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

# Fastest first, from a cold process: LiteRT loads in tens of milliseconds, onnxruntime in a few tenths.
TENSORFLOW_FREE = ("tflite", "onnx")
# The module each needs: without it the artifact cannot answer here.
RUNTIME_MODULES = {"tflite": "ai_edge_litert", "onnx": "onnxruntime", "openvino": "openvino"}
# What OpenVINO reads, in the order it is tried.
OPENVINO_SOURCES = ("onnx", "tflite")
# Predictor runtimes that never need TensorFlow: their decoder is Pillow + numpy.
TENSORFLOW_FREE_RUNTIMES = frozenset({"litert", "onnxruntime", "openvino"})


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def verified(labels: dict[str, Any], fmt: str) -> str | None:
    """None when export verification passed ``fmt``'s artifact; else why not."""
    result = ((labels.get("verification") or {}).get("results") or {}).get(fmt)
    if not isinstance(result, dict):
        return "export verification did not check it"
    if not result.get("passed"):
        return "it failed export verification"
    return None


def quantized(labels: dict[str, Any], fmt: str) -> bool:
    """Whether ``fmt``'s artifact is quantized: its answers differ from the Keras model's, so it answers
    only when named (``RUN/model_int8.tflite``); never a fallback worth a note."""
    result = ((labels.get("verification") or {}).get("results") or {}).get(fmt)
    return isinstance(result, dict) and result.get("quantization", "none") != "none"


def candidates(folder: Path, labels: dict[str, Any], order: tuple[str, ...] = TENSORFLOW_FREE,
               runtime_of: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """``(formats that may answer, in order; why each other listed one may not)``. ``runtime_of``: the
    module each format needs (default ``RUNTIME_MODULES``; OpenVINO's for ``--runtime openvino``)."""
    exports: dict[str, list[str]] = labels.get("artifacts", {})
    usable, skipped = [], []
    for fmt in order:
        files = exports.get(fmt)
        if not files or quantized(labels, fmt):
            continue
        module = (runtime_of or RUNTIME_MODULES)[fmt]
        why = verified(labels, fmt)
        if why is None and not (folder / files[0]).is_file():
            why = "the file is missing"
        if why is None and not installed(module):
            why = f"{module} is not installed"
        if why is None:
            usable.append(fmt)
        else:
            skipped.append(f"{files[0]}: {why}")
    return usable, skipped
