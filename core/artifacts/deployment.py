"""The deployment table: every exported artifact's held-out accuracy through its own runtime,
its difference from the Keras model (McNemar's exact test), top-1 agreement, max |diff|, file
size, batch-1 latency and batch-32 throughput; ``deployment.json`` in the run folder.

Outputs come from verification's own forward passes (``VerificationReport.outputs``), not a
second run. A Keras artifact (h5, keras) runs in the reference's own runtime, verified equal
within ``FLOAT_TOLERANCE``: its row takes the reference's outputs. Latency is timed only where
a non-Keras artifact exists, so a default h5-only run pays nothing for the table."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clf.files import write_json
from clf.artifacts.verify import KERAS_FORMATS

DEPLOYMENT_FILE = "deployment.json"
LATENCY_REPEATS = 10  # batch-1 calls timed (after one warm-up); the median is reported
THROUGHPUT_REPEATS = 2  # batch-32 calls timed; the best is reported


@dataclass
class Row:
    artifact: str  # the exporter's name
    file: str
    runtime: str
    quantization: str
    variant: str | None
    images: int
    accuracy: float
    keras_accuracy: float
    difference: float  # accuracy - keras_accuracy
    p_value: float  # McNemar's exact test of the two models' correct/wrong on the same images
    top1_agreement: float
    max_abs_diff: float
    size_bytes: int
    latency_ms: float | None = None  # batch 1, median
    throughput: float | None = None  # images per second at batch 32


def mcnemar_p(reference_correct: np.ndarray, correct: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: the binomial(b + c, 1/2) test on the discordant pairs
    (b: only the reference right, c: only the artifact right); 1 with none."""
    ref, got = np.asarray(reference_correct, bool), np.asarray(correct, bool)
    b, c = int(np.sum(ref & ~got)), int(np.sum(~ref & got))
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2.0 ** n
    return float(min(1.0, 2.0 * tail))


def timing(predict_batch: Any, image: np.ndarray) -> tuple[float, float]:
    """``(batch-1 latency in ms, median of LATENCY_REPEATS; batch-32 images per second, best of
    THROUGHPUT_REPEATS)`` of ``predict_batch`` on copies of one ``image``."""
    one = np.asarray(image, np.float32)[None]
    predict_batch(one)  # warm-up: allocation, first-call setup
    times = []
    for _ in range(LATENCY_REPEATS):
        t0 = time.perf_counter()
        predict_batch(one)
        times.append(time.perf_counter() - t0)
    batch = np.repeat(one, 32, axis=0)
    predict_batch(batch)
    best = float("inf")
    for _ in range(THROUGHPUT_REPEATS):
        t0 = time.perf_counter()
        predict_batch(batch)
        best = min(best, time.perf_counter() - t0)
    return float(np.median(times)) * 1000.0, 32.0 / best


def build_rows(report: Any, targets: Sequence[int] | np.ndarray, reference: np.ndarray, artifacts: dict[str, list[Path]],
               labels: dict[str, Any], time_it: bool | None = None) -> list[Row]:
    """One row per verified, passed artifact of ``report`` (a ``VerificationReport`` holding
    ``outputs`` and ``predictors``), scored on the images whose class indices are ``targets``
    (the reference's outputs on them: ``reference``). ``time_it``: time latency (None: only
    when a non-Keras artifact is there)."""
    k = len(labels.get("class_names", [])) or reference.shape[-1]
    n = min(len(targets), len(reference))
    truth = np.asarray(targets)[:n]
    reference = np.asarray(reference, np.float64)[:n]
    ref_correct = reference[:, :k].argmax(1) == truth
    if time_it is None:
        time_it = any(name not in KERAS_FORMATS for name in report.results)
    variants = labels.get("quantization_variant", {})
    rows = []
    for name, result in report.results.items():
        if not result.passed or name not in artifacts:
            continue
        got = report.outputs.get(name)
        keras_runtime = name in KERAS_FORMATS or got is None or len(got) < n
        outputs = reference if keras_runtime else np.asarray(got, np.float64)[:n]
        correct = outputs[:, :k].argmax(1) == truth
        agreement = float(np.mean(outputs[:, :k].argmax(1) == reference[:, :k].argmax(1))) if n else 1.0
        diff = float(np.max(np.abs(outputs - reference))) if n and not keras_runtime else result.max_abs_diff
        if keras_runtime:
            agreement = result.top1_agreement
        path = Path(artifacts[name][0])
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
        latency = throughput = None
        predictor = report.predictors.get(name)
        if time_it and predictor is not None and len(report.images_array):
            latency, throughput = timing(predictor.predict_batch, report.images_array[0])
        accuracy, keras_accuracy = float(np.mean(correct)) if n else 0.0, float(np.mean(ref_correct)) if n else 0.0
        rows.append(Row(name, path.name, result.runtime, result.quantization,
                        (variants.get(name) or {}).get("variant"), int(n), accuracy, keras_accuracy,
                        accuracy - keras_accuracy, mcnemar_p(ref_correct, correct), agreement, diff, int(size),
                        latency, throughput))
    return rows


def write_table(run_dir: Path, rows: Sequence[Row], source: str) -> Path:
    """``deployment.json``: the rows, replacing the rows of the same artifacts (clf export adds some)."""
    import json

    path = Path(run_dir) / DEPLOYMENT_FILE
    earlier: dict[str, Any] = {}
    if path.is_file():
        try:
            earlier = {r["artifact"]: r for r in json.loads(path.read_text(encoding="utf-8")).get("rows", [])}
        except (ValueError, AttributeError, KeyError, TypeError):
            earlier = {}
    merged = {**earlier, **{r.artifact: asdict(r) for r in rows}}
    return write_json(path, {"format": "clf-deployment/1", "source": source, "rows": list(merged.values())})


def read_table(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``deployment.json`` ([] when there is none)."""
    import json

    path = Path(run_dir) / DEPLOYMENT_FILE
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("rows", [])
    except (ValueError, AttributeError):
        return []
    return rows if isinstance(rows, list) else []
