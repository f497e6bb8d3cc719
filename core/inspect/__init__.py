"""Look back at a finished run: which photos does it get wrong, and why?

``inspect_run`` (``clf inspect RUN_DIR``) ranks suspected label issues from out-of-fold
probabilities, shows the worst validation errors with heatmaps, finds outliers and near
duplicates, measures calibration, and writes one offline page, ``RUN_DIR/inspect/index.html``.
``relabel`` (``clf relabel DATA fixes.csv``) moves the files a fixes list names, with an undo
log, never deleting a file. Importing this package is cheap; TensorFlow loads when needed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InspectResult", "inspect_run", "RelabelPlan", "plan_relabel", "plan_undo", "apply_relabel"]


def __getattr__(name: str) -> Any:
    import importlib

    if name not in __all__:
        raise AttributeError(f"module 'clf.inspect' has no attribute {name!r}")
    module = "report" if name in ("InspectResult", "inspect_run") else "relabel"
    return getattr(importlib.import_module(f"clf.inspect.{module}"), name)
