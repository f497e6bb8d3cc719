"""The MLflow pyfunc model of a clf bundle, logged by the mlflow tracker plugin as "models from
code": MLflow runs this file when the model loads. It wraps clf's own predictor (the decoding
and forward pass of ``clf predict``), so ``mlflow.pyfunc.load_model(uri).predict([paths])``
answers exactly as ``clf predict`` does: one row of class probabilities per image path, columns
in the order of the bundle's labels.json ``class_names`` (also in the model's metadata)."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class ClfModel(PythonModel):
    def load_context(self, context: Any) -> None:
        import clf

        # runtime "auto", as clf predict's default: the bundle's config.toml names the run's cache.
        self.predictor = clf.load_predictor(context.artifacts["bundle"], runtime="auto")

    def predict(self, context: Any, model_input: list[str], params: dict[str, Any] | None = None) -> Any:
        import clf

        files = [str(p) for p in model_input]
        results = clf.predict_files(self.predictor, files, int((params or {}).get("batch_size", 32)))
        bad = [r for r in results if r.error]
        if bad:
            raise clf.DataError(f"{len(bad)} image(s) could not be read (first: {bad[0].path}: {bad[0].error}); "
                                f"expected image files. Pass readable photos.")
        return np.asarray([r.probabilities for r in results], np.float64).reshape(len(files), -1)


mlflow.models.set_model(ClfModel())
