"""Multi-label runs end to end: the solved one-vs-rest head and its out-of-fold thresholds, the
metrics (against scikit-learn), labels.json, each export's round trip, predict/serve/evaluate."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from clf.train import linear_head
from conftest import SMALL_BACKBONE, SMALL_SIZE
from test_labels_file_loader import make_shapes, write_csv

runner = CliRunner()
ROWS = [("red",), ("green",), ("red", "green"), ("blue",), ("red", "blue"), ("green", "blue")] * 5


def _problem(seed=0, n=240, d=30, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x @ rng.normal(size=(d, k)) + rng.normal(size=(n, k)) * 3 > 1.5).astype(np.float64)
    return x, y


def test_solved_sigmoid_head_is_scikit_learns_one_vs_rest_logistic_regression():
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _problem()
    l2 = 0.02
    solution = linear_head.solve_at(x, y, y.shape[1], l2)
    for c in range(y.shape[1]):
        ref = sklearn.LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10, max_iter=10000).fit(x, y[:, c])
        np.testing.assert_allclose(solution.kernel[:, c], ref.coef_[0], atol=1e-4)
        np.testing.assert_allclose(solution.bias[c], ref.intercept_[0], atol=1e-4)


def test_thresholds_are_the_f1_best_cuts_of_out_of_fold_scores():
    from scipy.special import expit

    x, y = _problem(seed=1)
    solution = linear_head.solve(x, y, y.shape[1])
    assert solution.folds == 5 and solution.thresholds is not None
    # The same folds (stratified by label set), each scored by a head solved without it.
    strata = np.unique(y, axis=0, return_inverse=True)[1].reshape(-1)
    fold = linear_head.stratified_folds(strata, solution.folds)
    oof = np.zeros_like(y)
    for f in range(solution.folds):
        head = linear_head.solve_at(x[fold != f], y[fold != f], y.shape[1], solution.l2)
        oof[fold == f] = expit(x[fold == f] @ head.kernel + head.bias)
    np.testing.assert_allclose(solution.thresholds, linear_head.f1_thresholds(y, oof), atol=0.03)
    # ... and not the in-sample cuts: the full-data head's own scores separate better than held-out ones.
    record = solution.record()
    assert record["thresholds"] and "out-of-fold" in record["threshold_selection"]


def test_f1_thresholds_cut_between_scores():
    y = np.array([[1], [1], [0], [1], [0], [0]])
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.3], [0.1]])
    # Keeping the top 4 gives F1 6/7, the best: the cut lies between 0.6 and 0.3.
    assert linear_head.f1_thresholds(y, s)[0] == pytest.approx(0.45)
    assert linear_head.f1_thresholds(np.zeros((3, 1)), s[:3])[0] == 0.5  # no positives: 0.5


def test_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    from clf.report.multilabel import multilabel_report

    rng = np.random.default_rng(2)
    y = (rng.random((150, 4)) < 0.35).astype(int)
    s = np.round(np.clip(0.35 * y + rng.random((150, 4)) * 0.75, 0, 1), 2)  # rounded: ties
    cuts = [0.5, 0.4, 0.6, 0.55]
    r = multilabel_report(y, s, cuts, list("abcd"))
    p = (s >= np.array(cuts)).astype(int)
    assert r["map"] == pytest.approx(metrics.average_precision_score(y, s, average="macro"))
    for c, name in enumerate("abcd"):
        assert r["per_class"][name]["average_precision"] == pytest.approx(metrics.average_precision_score(y[:, c], s[:, c]))
        assert r["per_class"][name]["precision"] == pytest.approx(metrics.precision_score(y[:, c], p[:, c]))
        assert r["per_class"][name]["recall"] == pytest.approx(metrics.recall_score(y[:, c], p[:, c]))
    assert r["micro_f1"] == pytest.approx(metrics.f1_score(y, p, average="micro"))
    assert r["macro_f1"] == pytest.approx(metrics.f1_score(y, p, average="macro"))
    assert r["exact_match"] == pytest.approx(metrics.accuracy_score(y, p))
    assert r["label_cardinality"] == pytest.approx(y.sum(axis=1).mean())
    assert r["loss"] == pytest.approx(metrics.log_loss(y.ravel(), np.clip(s.ravel(), 1e-7, 1 - 1e-7)))


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    """One solved multi-label run on coloured squares, exported h5/tflite/onnx and verified."""
    root = tmp_path_factory.mktemp("multilabel")
    path = write_csv(root, make_shapes(root, ROWS), ROWS)
    config = clf.RunConfig(backbone=SMALL_BACKBONE, data=str(path), weights="none", image_size=SMALL_SIZE,
                           output=str(root / "run"), augment=False, export=("h5", "tflite", "onnx"),
                           cache_dir=str(root / "cache"))
    return clf.run(config), root


def test_a_multilabel_run_records_task_thresholds_and_metrics(multilabel_run):
    result, root = multilabel_run
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert labels["task"] == "multilabel" and "unknown" not in labels
    assert len(labels["thresholds"]) == 3 and labels["thresholds"] == result.training["head"]["thresholds"]
    assert labels["verification"]["passed"]
    assert result.model.output_shape == (None, 3)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["splits"]["validation"]
    assert metrics["task"] == "multilabel" and metrics["map"] > 0.9 and metrics["macro_f1"] > 0.8
    assert (result.run_dir / "pr_curves.png").stat().st_size > 1000
    assert result.metrics["validation_map"] == metrics["map"]


@pytest.mark.parametrize("fmt", ["h5", "tflite", "onnx"])
def test_each_export_predicts_the_same_labels(multilabel_run, fmt):
    result, root = multilabel_run
    files = [root / "img" / f"{i:03d}.png" for i in range(6)]
    predictor = clf.load_predictor(result.run_dir, fmt=fmt)
    predictions = clf.predict_files(predictor, files)
    expected = result.predict(files)
    for p, row, labels in zip(predictions, expected, ROWS):
        np.testing.assert_allclose(p.probabilities, row, atol=1e-4)
        assert sorted(p.labels) == sorted(labels)


def test_predict_csv_and_json_carry_the_labels(multilabel_run):
    result, root = multilabel_run
    photo = root / "img" / "002.png"  # red and green
    res = runner.invoke(app, ["predict", str(result.run_dir), str(photo), "--format", "json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)[0]
    assert sorted(label["class"] for label in row["labels"]) == ["green", "red"]
    assert all(label["score"] >= 0.4 for label in row["labels"])
    res = runner.invoke(app, ["predict", str(result.run_dir), str(photo), "--format", "csv"])
    header, line = res.stdout.strip().splitlines()
    assert header.startswith("path,labels,") and set(line.split(",")[1].split(";")) == {"green", "red"}


def test_serve_answers_with_the_labels(multilabel_run):
    httpx = pytest.importorskip("httpx")
    from clf.serve import ServeSettings, create_app
    from test_serve import serving_in_thread

    result, root = multilabel_run
    predictor = clf.load_predictor(result.run_dir)
    with serving_in_thread(create_app(predictor, ServeSettings())) as url:
        res = httpx.post(url + "/predict", content=(root / "img" / "004.png").read_bytes(),
                         headers={"Content-Type": "image/png"}, timeout=30)
    assert res.status_code == 200, res.text
    assert sorted(label["class"] for label in res.json()["predictions"][0]["labels"]) == ["blue", "red"]


def test_evaluate_a_labels_file(multilabel_run, tmp_path):
    result, root = multilabel_run
    res = runner.invoke(app, ["evaluate", str(result.run_dir), "--data", str(root / "labels.csv"),
                              "--output", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())["splits"]["evaluation"]
    assert report["images"] == len(ROWS) and report["map"] > 0.9
    assert "mAP" in res.output and (tmp_path / "ev" / "pr_curves.png").is_file()


def test_keras_solver_fits_binary_cross_entropy(multilabel_run, tmp_path):
    _, root = multilabel_run
    result = clf.run(backbone=SMALL_BACKBONE, data=str(root / "labels.csv"), weights="none", image_size=SMALL_SIZE,
                     output=str(tmp_path / "keras"), augment=False, solver="keras", epochs=2, batch_size=8,
                     verify=False, cache_dir=str(root / "cache"))
    assert result.training["head"]["solver"] == "keras_fit"
    assert json.loads((result.run_dir / "labels.json").read_text())["thresholds"] == [0.5] * 3
    assert set(result.evaluation["validation"]) >= {"map", "macro_f1", "exact_match"}


@pytest.mark.parametrize("option,match", [({"unknown": "maha"}, "--unknown maha"), ({"folds": 3}, "--folds 3")])
def test_what_multilabel_runs_refuse(multilabel_run, tmp_path, option, match):
    _, root = multilabel_run
    with pytest.raises(clf.ConfigError, match=match):
        clf.run(backbone=SMALL_BACKBONE, data=str(root / "labels.csv"), weights="none", image_size=SMALL_SIZE,
                output=str(tmp_path / "no"), verify=False, cache_dir=str(root / "cache"), **option)


def test_inspect_refuses_a_multilabel_run_clearly(multilabel_run):
    pytest.importorskip("cleanlab")
    result, _ = multilabel_run
    with pytest.raises(clf.UsageError, match="multi-label run"):
        clf.inspect_run(result.run_dir)
