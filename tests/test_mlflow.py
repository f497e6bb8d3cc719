"""--track mlflow (plugins/mlflow_tracker.py): parameters, metrics, phase timings, the run
folder and a pyfunc model that answers exactly as clf predict does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder

mlflow = pytest.importorskip("mlflow")
runner = CliRunner()


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A run tracked to ./mlruns (the default), solved head (no epochs) and --folds 2."""
    root = tmp_path_factory.mktemp("mlflow")
    data = make_folder(root / "data", per_class=6)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        result = clf.run(backbone=SMALL_BACKBONE, data=str(data), weights="none", image_size=SMALL_SIZE,
                         batch_size=8, augment=False, verify=False, folds=2, track="mlflow",
                         output=str(root / "run"), cache_dir=str(root / "cache"))
    return result, root, data


def test_run_is_tracked(tracked):
    result, root, _ = tracked
    record = json.loads((result.run_dir / "mlflow.json").read_text())
    assert record["tracking_uri"] == (root / "mlruns").as_uri() and record["experiment"] == "clf"
    client = mlflow.tracking.MlflowClient(record["tracking_uri"])
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["backbone"] == SMALL_BACKBONE and run.data.params["folds"] == "2"
    metrics = run.data.metrics
    assert metrics["validation_accuracy"] == pytest.approx(result.metrics["validation_accuracy"])
    assert metrics["cv_accuracy_mean"] == pytest.approx(result.cross_validation["accuracy"]["mean"])
    assert {"seconds_train", "seconds_evaluate", "seconds_export"} <= set(metrics)
    logged = {a.path for a in client.list_artifacts(record["run_id"], "run")}
    assert {"run/labels.json", "run/metrics.json", "run/manifest.json", "run/model.h5", "run/mlflow.json"} <= logged


def test_pyfunc_answers_as_clf_predict(tracked):
    result, root, data = tracked
    record = json.loads((result.run_dir / "mlflow.json").read_text())
    files = sorted(str(p) for p in Path(data).rglob("*.jpg"))[:4]
    model = mlflow.pyfunc.load_model(record["model_uri"])
    got = np.asarray(model.predict(files))
    res = runner.invoke(app, ["predict", str(result.run_dir), *files, "--json", "--top-k", "3"])
    assert res.exit_code == 0, res.output
    names = result.class_names
    expected = np.zeros((len(files), len(names)))
    for i, row in enumerate(json.loads(res.stdout)):
        for top in row["top"]:
            expected[i, names.index(top["class"])] = top["probability"]
    assert got.shape == (4, 3) and np.array_equal(got, expected)


def test_unknown_tracker_is_refused(tmp_path):
    with pytest.raises(clf.UnknownComponentError, match="mlflw"):
        clf.run(backbone=SMALL_BACKBONE, data=str(tmp_path), weights="none", track="mlflw")


def test_tracker_with_a_missing_package_fails_before_the_data(host, tmp_path):
    host.callbacks.add("test_plugin", "needy", lambda config, run_dir: None, requires=("no_such_module_xyz",),
                       install="pip install needy")
    with pytest.raises(clf.ConfigError, match=r"--track needy needs no_such_module_xyz.*pip install needy"):
        clf.run(backbone=SMALL_BACKBONE, data=str(tmp_path / "absent"), weights="none", track="needy", host=host)
