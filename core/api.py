"""``clf.run`` and ``clf.resume``: the engine's entry points with optional progress bars.
Above both engine and CLI (the engine never imports the CLI), so notebooks get ``clf run``'s bars."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from clf.config import RunConfig
    from clf.events import Observer
    from clf.host.manager import PluginHost
    from clf.train.engine import RunResult


def run(config: RunConfig | None = None, observer: Observer | None = None, host: PluginHost | None = None,
        *, progress: bool = False, resume_from: Path | None = None, **options: Any) -> RunResult:
    """Train, evaluate and export one classifier (``clf.train.engine.run``).

    ``options`` are ``RunConfig`` fields and override ``config``'s values.
    ``progress=True`` shows progress bars (terminal or Jupyter, ``clf.cli.render.progress_observer``);
    ``observer`` receives every event."""
    from clf.train import engine

    return _with_progress(progress, observer, lambda seen: engine.run(config, seen, host, resume_from=resume_from,
                                                                      **options))


def resume(run_dir: str | Path, observer: Observer | None = None, host: PluginHost | None = None, *,
           progress: bool = False, **options: Any) -> RunResult:
    """Continue an interrupted run from its last completed epoch, in the same folder.
    ``options`` that differ from the recorded config raise ConfigError."""
    from clf.train import engine

    return _with_progress(progress, observer, lambda seen: engine.resume(run_dir, seen, host, **options))


def _with_progress(progress: bool, observer: Observer | None,
                   call: Callable[[Observer | None], RunResult]) -> RunResult:
    if not progress:
        return call(observer)
    # Only here: importing clf.cli loads typer and every command module.
    from clf.cli.render import progress_observer
    from clf.report.history import TeeObserver

    display = progress_observer()
    try:
        return call(TeeObserver(observer, display) if observer else display)
    finally:
        display.close()  # the bars end even when the run fails
