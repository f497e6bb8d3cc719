"""The engine reports progress by calling an ``Observer``, never by printing; every method has a
no-op default, so an observer implements only what it shows."""

from __future__ import annotations

from typing import Any


class Observer:
    def note(self, text: str) -> None:
        """Something the user should know (a fallback taken, a choice made for them)."""

    def phase_start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        """A phase began (``data``, ``build``, ``train``, ``evaluate``, ``export``, ...)."""

    def phase_advance(self, phase: str, amount: int = 1) -> None:
        """Progress within a phase (``amount`` more of ``total`` done)."""

    def phase_end(self, phase: str, **info: Any) -> None:
        """A phase finished; ``info`` holds its results (e.g. ``seconds``)."""

    def epoch_end(self, phase: str, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        """One training epoch finished (``epoch`` counts from 1)."""


class RecordingObserver(Observer):
    """Keeps every call as ``(method, args...)``; handy in tests and notebooks."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def note(self, text: str) -> None:
        self.events.append(("note", text))

    def phase_start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        self.events.append(("phase_start", phase, total))

    def phase_advance(self, phase: str, amount: int = 1) -> None:
        self.events.append(("phase_advance", phase, amount))

    def phase_end(self, phase: str, **info: Any) -> None:
        self.events.append(("phase_end", phase, info))

    def epoch_end(self, phase: str, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        self.events.append(("epoch_end", phase, epoch, epochs, dict(logs)))

    def notes(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "note"]
