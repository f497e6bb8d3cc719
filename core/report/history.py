"""What a run did, recorded from the observer's events: epochs per phase and phase timings.
``RunRecorder`` sees the events the progress display sees, however training is done."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from typing import Any, Sequence

from clf.events import Observer


@dataclass
class EpochRecord:
    phase: str  # "train", "fine_tune", ...
    epoch: int  # counts from 1 within the phase
    logs: dict[str, float]


class RunRecorder(Observer):
    def __init__(self) -> None:
        self.epochs: list[EpochRecord] = []
        self.seconds: dict[str, float] = {}  # wall time per phase (summed if a phase repeats)
        self._started: dict[str, float] = {}

    def phase_start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        self._started[phase] = time.perf_counter()

    def phase_end(self, phase: str, **info: Any) -> None:
        start = self._started.pop(phase, None)
        if start is not None:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def epoch_end(self, phase: str, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        self.epochs.append(EpochRecord(phase, int(epoch), {k: float(v) for k, v in logs.items()}))


def history_csv(records: Sequence[EpochRecord]) -> str:
    """One row per epoch: ``phase,epoch,<metric columns in first-seen order>``."""
    columns = list(dict.fromkeys(k for r in records for k in r.logs))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["phase", "epoch", *columns])
    for r in records:
        writer.writerow([r.phase, r.epoch, *(repr(r.logs[c]) if c in r.logs else "" for c in columns)])
    return buf.getvalue()


class TeeObserver(Observer):
    """Forwards every event to several observers, in order."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = [o for o in observers if o is not None]

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        for o in self.observers:
            getattr(o, method)(*args, **kwargs)

    def note(self, text: str) -> None:
        self._each("note", text)

    def phase_start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        self._each("phase_start", phase, total, unit)

    def phase_advance(self, phase: str, amount: int = 1) -> None:
        self._each("phase_advance", phase, amount)

    def phase_end(self, phase: str, **info: Any) -> None:
        self._each("phase_end", phase, **info)

    def epoch_end(self, phase: str, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        self._each("epoch_end", phase, epoch, epochs, logs)
