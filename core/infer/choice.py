"""Which runtime runs the frozen feature extractor: ``--runtime auto|tensorflow|tflite|onnx|openvino``.
A converted extractor is used only once it reproduces TensorFlow's features on a real batch
(``TOLERANCE``), and by ``auto`` only if fastest; otherwise TensorFlow runs it, with a note,
never an error. Checks are stored (``clf.infer.store.RuntimeStore``) for later runs.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from clf.infer.convert import describe_failure
from clf.infer.runners import Runner, RuntimeUnavailable, TensorFlowRunner
from clf.infer.store import OPENERS, RuntimeStore, content_hash

TOLERANCE = 1e-4  # relative max difference of the features against TensorFlow's
# Tried in this order by auto; each that agrees with TensorFlow is timed, the fastest runs. OpenVINO
# reads the TFLite conversion; ONNX (a slow conversion) only when neither of those agreed.
AUTO_CANDIDATES = ("tflite", "openvino", "onnx")
FALLBACK_ONLY = frozenset({"onnx"})
TIMING_SECONDS = 0.2  # time each runtime at least this long (at most 3 calls)


def relative_difference(reference: np.ndarray, got: np.ndarray) -> float:
    """``max|reference - got| / max|reference|`` (inf for a shape mismatch or non-finite output)."""
    reference, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if reference.shape != got.shape or not np.all(np.isfinite(got)):
        return float("inf")
    if not reference.size:
        return 0.0
    scale = float(np.max(np.abs(reference))) or 1.0
    return float(np.max(np.abs(reference - got)) / scale)


def images_per_second(runtime: Runner, batch: np.ndarray) -> float:
    """Best of up to three timed calls (after a warm one), stopping once ``TIMING_SECONDS`` passed."""
    best, spent = float("inf"), 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        runtime.run(batch)
        took = time.perf_counter() - t0
        best, spent = min(best, took), spent + took
        if spent >= TIMING_SECONDS:
            break
    return len(batch) / max(best, 1e-9)


class BackboneRuntime:
    """``run(batch) -> features`` in the runtime chosen for ``model`` (an extractor:
    raw RGB 0-255 -> pooled features), decided by ``decide`` or the first ``run`` unless stored.
    ``keep_tensorflow``: why TensorFlow must run it; ``no_conversion``: why converting would
    not pay (a stored decision is still used, but nothing new is converted)."""

    def __init__(self, requested: str, model: Any, store: RuntimeStore | None = None, *,
                 keep_tensorflow: str | None = None, no_conversion: str | None = None,
                 openers: Mapping[str, Callable[[Any, RuntimeStore | None], Runner]] | None = None) -> None:
        self.requested, self.model, self.store = requested, model, store
        self.openers = dict(OPENERS if openers is None else openers)
        self.name: str | None = None  # None until decided
        self.check: dict[str, Any] | None = None  # the agreement check behind the choice
        self.notes: list[str] = []
        self.reused = False  # the decision came from the store
        self.reason: str | None = None  # why TensorFlow runs it without a check
        self._runtime: Runner | None = None
        if requested == "tensorflow":
            self.name = "tensorflow"
        elif keep_tensorflow:
            self.name, self.reason = "tensorflow", keep_tensorflow
            if requested != "auto":
                self.notes.append(f"--runtime {requested} is not used with {keep_tensorflow}: TensorFlow "
                                  f"runs the backbone.")
        else:
            self._from_store()
            if self.name is None and no_conversion:
                self.name, self.reason = "tensorflow", no_conversion

    def decide(self, batch: np.ndarray) -> str:
        """Choose on ``batch`` (a no-op once decided); returns the runtime's name."""
        if self.name is None:
            self._choose(np.asarray(batch, np.float32))
        return self.name  # type: ignore[return-value]

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        self.decide(batch)
        if self._runtime is None:
            self._runtime = self._open_decided()
        return self._runtime.run(batch)

    def record(self) -> dict[str, Any]:
        """What the run record says: the runtime, what was asked, the measured agreement."""
        return {"name": self.name or "tensorflow", "requested": self.requested, "check": self.check,
                "reused_check": self.reused, "reason": self.reason, "notes": list(self.notes)}

    def _choose(self, batch: np.ndarray) -> None:
        tensorflow = TensorFlowRunner(self.model)
        reference = tensorflow.run(batch)  # also the warm-up
        candidates = AUTO_CANDIDATES if self.requested == "auto" else (self.requested,)
        reasons: list[str] = []
        passed: dict[str, tuple[Runner, dict[str, Any]]] = {}
        for name in candidates:
            if (passed and name in FALLBACK_ONLY) or (self.requested == "auto" and name not in self.openers):
                continue
            try:
                runtime = self.openers[name](self.model, self.store)
                got = runtime.run(batch)  # also its warm-up
            except Exception as exc:  # a runtime that fails on the batch is as good as a missing one
                why = exc if isinstance(exc, RuntimeUnavailable) else describe_failure(exc)
                reasons.append(f"{name}: {why}")
                continue
            diff = relative_difference(reference, got)
            check = self.check = {"runtime": name, "relative_max_diff": diff, "tolerance": TOLERANCE,
                                  "images": len(batch), "passed": diff <= TOLERANCE}
            if not check["passed"]:
                reasons.append(f"{name}: its features differ from TensorFlow's by {diff:.2e} (relative max "
                               f"difference on {len(batch)} images; at most {TOLERANCE:g} allowed)")
                self._remember(name, check)  # it disagreed: remember, so no run checks it again
                continue
            passed[name] = runtime, check
        if passed:
            speed = {"tensorflow": images_per_second(tensorflow, batch)}
            speed.update({name: images_per_second(runtime, batch) for name, (runtime, _) in passed.items()})
            rounded = {k: round(v, 1) for k, v in speed.items()}
            fastest = max(passed, key=lambda name: speed[name])
            for name, (_, check) in passed.items():
                check["images_per_second"] = {k: v for k, v in rounded.items() if k in ("tensorflow", name)}
            self.check = passed[fastest][1]
            faster = speed[fastest] > speed["tensorflow"]
            self.name, self._runtime = (fastest, passed[fastest][0]) if faster or self.requested != "auto" else \
                ("tensorflow", tensorflow)
            for name, (_, check) in passed.items():
                if name != fastest:
                    self._remember(name, check)
            self._remember(fastest, self.check)
            return
        self.name, self._runtime = "tensorflow", tensorflow
        self.notes.append(f"--runtime {self.requested}: TensorFlow runs the backbone, because "
                          + "; ".join(reasons) + ".")
        if self.check is not None and self.requested == "auto":  # auto's decision: TensorFlow
            self._remember(self.check["runtime"], self.check)

    def _remember(self, name: str, check: dict[str, Any]) -> None:
        """Store ``name``'s check (with the hash of the file it checked) and auto's decision."""
        if self.store is None:
            return
        stored = self.store.read_checks()
        content = self.store.load(name)
        stored.setdefault("checks", {})[name] = {**check, "file_hash": content_hash(content) if content else None}
        if self.requested == "auto" and self.name is not None:
            stored["auto"] = {"runtime": self.name, "checked": name, "notes": self.notes}
        self.store.write_checks(stored)

    def _from_store(self) -> None:
        """Take a decision stored by an earlier run whose converted file is still the same."""
        if self.store is None:
            return
        stored = self.store.read_checks()
        auto: dict[str, Any] = stored["auto"] if isinstance(stored.get("auto"), dict) else {}
        name = auto.get("checked") if self.requested == "auto" else self.requested
        if not isinstance(name, str):
            return  # nothing stored
        check = stored.get("checks", {}).get(name)
        content = self.store.load(name) if check else None
        if not check or content is None or content_hash(content) != check.get("file_hash"):
            return  # missing, or the converted file changed: check again
        self.check, self.reused = {k: v for k, v in check.items() if k != "file_hash"}, True
        if self.requested == "auto":
            self.name = auto.get("runtime") if auto.get("runtime") in ("tensorflow", name) else None
            self.notes.extend(auto.get("notes") or [])
        elif check.get("passed"):
            self.name = name
        else:
            self.name = "tensorflow"
            self.notes.append(f"--runtime {self.requested}: TensorFlow runs the backbone, because {name}'s "
                              f"features differed from TensorFlow's by {check.get('relative_max_diff', float('nan')):.2e} "
                              f"(checked earlier; at most {TOLERANCE:g} allowed).")

    def _open_decided(self) -> Runner:
        if self.name is not None and self.name != "tensorflow":
            try:
                return self.openers[self.name](self.model, self.store)
            except RuntimeUnavailable as exc:  # e.g. uninstalled since the stored check
                self.notes.append(f"--runtime {self.requested}: TensorFlow runs the backbone, because "
                                  f"{self.name}: {exc}.")
                self.name = "tensorflow"
        return TensorFlowRunner(self.model)
