"""Look back at a finished run: which photos does it get wrong, and why?

``inspect_run`` (``clf inspect RUN_DIR``) ranks suspected label issues from out-of-fold
probabilities, lists the worst validation errors with heatmaps of where the model looked,
finds outliers and near duplicates in feature space, measures calibration, and writes it all
to one offline page, ``RUN_DIR/inspect/index.html``. ``relabel`` (``clf relabel DATA
fixes.csv``) moves the files a fixes list names, with an undo log, never deleting a file.

One module per job: ``saved_run`` (what a run folder holds), ``features`` (the run's
features, from the cache), ``oof`` (out-of-fold probabilities), ``findings`` (label
issues, errors, outliers), ``duplicates``, ``calibration``, ``cam`` (heatmaps), ``thumbs``
(image files for the page), ``page`` (the HTML), ``report`` (all of it in order) and
``relabel``. Importing this package is cheap; TensorFlow loads when a step needs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InspectResult", "inspect_run", "RelabelPlan", "plan_relabel", "plan_undo", "apply_relabel"]


def __getattr__(name: str) -> Any:
    import importlib

    module = {"InspectResult": "report", "inspect_run": "report", "RelabelPlan": "relabel",
              "plan_relabel": "relabel", "plan_undo": "relabel", "apply_relabel": "relabel"}.get(name)
    if module is None:
        raise AttributeError(f"module 'clf.inspect' has no attribute {name!r}")
    return getattr(importlib.import_module(f"clf.inspect.{module}"), name)
