"""clf run --folds K: stratified, seeded folds over every labelled image's cached features, t
intervals of accuracy, macro F1 and per-class recall, in metrics.json and the printed report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from clf.errors import ConfigError
from clf.report.confidence import t_interval
from clf.train.crossval import fold_report
from clf.train.oof import OutOfFold, assign_folds
from conftest import SMALL_BACKBONE, SMALL_SIZE, SMALL_WEIGHTS, make_folder, require_shared

runner = CliRunner()


def test_folds_are_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [12, 9, 7])
    fold, k = assign_folds(labels, ["a", "b", "c"], 3, seed=7)
    assert k == 3
    for f in range(3):  # every class in every fold, dealt evenly
        counts = np.bincount(labels[fold == f], minlength=3)
        assert (np.abs(counts - np.bincount(labels) / 3) <= 1).all()
    again, _ = assign_folds(labels, ["a", "b", "c"], 3, seed=7)
    other, _ = assign_folds(labels, ["a", "b", "c"], 3, seed=8)
    assert (again == fold).all() and (other != fold).any()
    # fewer images in a class than folds: as many folds as the smallest class allows
    assert assign_folds(np.repeat([0, 1], [10, 3]), ["a", "b"], 5, seed=0)[1] == 3


def test_t_interval_matches_scipy():
    from scipy import stats

    scores = [0.8, 0.75, 0.9, 0.85, 0.7]
    got = t_interval(scores)
    low, high = stats.t.interval(0.95, len(scores) - 1, loc=np.mean(scores), scale=stats.sem(scores))
    assert got["mean"] == pytest.approx(np.mean(scores))
    assert (got["low"], got["high"]) == (pytest.approx(low), pytest.approx(high))
    assert got["sd"] == pytest.approx(np.std(scores, ddof=1)) and got["per_fold"] == scores
    # One more split's score: the prediction interval, scale sd * sqrt(1 + 1/k).
    scale = np.std(scores, ddof=1) * np.sqrt(1 + 1 / len(scores))
    low, high = stats.t.interval(0.95, len(scores) - 1, loc=np.mean(scores), scale=scale)
    assert (got["split_low"], got["split_high"]) == (pytest.approx(low), pytest.approx(min(high, 1.0)))
    # clipped to [0, 1]; identical folds: a zero-width interval
    assert t_interval([1.0, 0.9, 1.0])["high"] == 1.0
    assert t_interval([0.5, 0.5])["low"] == t_interval([0.5, 0.5])["high"] == 0.5


def test_fold_report_scores_each_fold():
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    predicted = np.array([0, 1, 1, 1, 0, 0, 1, 1])  # fold 0: 3 of 4 right, fold 1: all right
    report = fold_report(OutOfFold(np.eye(2)[predicted], fold, 2, "solved", 0.1), labels, ["a", "b"])
    assert report["accuracy"]["per_fold"] == [0.75, 1.0]
    assert report["per_class_recall"]["a"]["per_fold"] == [0.5, 1.0]
    assert report["per_class_recall"]["b"]["per_fold"] == [1.0, 1.0]
    assert report["pooled"]["accuracy"] == 7 / 8 and report["fold_images"] == [4, 4]
    assert (report["heads"], report["l2"], report["folds"]) == ("solved", 0.1, 2)


def test_folds_config():
    assert clf.RunConfig(folds=5).folds == 5 and clf.RunConfig().folds == 0
    for bad in (1, -2, "3"):
        with pytest.raises(ConfigError, match="folds"):
            clf.RunConfig(folds=bad)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("folds") / "data", per_class=8)


def test_run_with_folds_solved_head(data, tmp_path):
    """The CLI: the default solved head's folds at the run's L2; the report printed and in metrics.json;
    the exported model and validation scores the same as without --folds."""
    weights = str(require_shared(SMALL_WEIGHTS))
    common = ["run", "--backbone", SMALL_BACKBONE, "--data", str(data), "--weights", weights, "--image-size",
              str(SMALL_SIZE), "--no-augment", "--no-verify", "--cache-dir", str(tmp_path / "cache"),
              "--log-format", "plain"]
    res = runner.invoke(app, [*common, "--folds", "3", "--output", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "3-fold cross-validation on 24 images" in res.output and "per-class recall" in res.output
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    cv = metrics["cross_validation"]
    assert (cv["folds"], cv["images"], cv["heads"], cv["seed"]) == (3, 24, "solved", 42)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert cv["l2"] == manifest["training"]["head"]["l2"]
    assert cv["accuracy"]["low"] <= cv["accuracy"]["mean"] <= cv["accuracy"]["high"]
    assert set(cv["per_class_recall"]) == {"ant", "bee", "cat"} and sum(cv["fold_images"]) == 24
    assert manifest["metrics"]["cv_accuracy"] == cv["accuracy"]["mean"]
    res = runner.invoke(app, [*common, "--output", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    without = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "cross_validation" not in without and without["splits"] == metrics["splits"]


def test_run_with_folds_keras_head(data, tmp_path):
    """A head trained by Keras fit: each fold's head trained the same way (clf.train.oof)."""
    result = clf.run(backbone=SMALL_BACKBONE, data=str(data), weights="none", image_size=SMALL_SIZE, epochs=2,
                     batch_size=8, solver="keras", augment=False, verify=False, folds=2, output=str(tmp_path / "k"))
    cv = result.cross_validation
    assert (cv["folds"], cv["heads"], cv["l2"]) == (2, "keras", None)
    assert len(cv["accuracy"]["per_fold"]) == 2 and "cv_accuracy" in result.metrics
    assert "2-fold cross-validation" in result._repr_html_()


def test_fold_heads_with_one_shared_basis_match_the_tight_ones():
    """--folds solves each fold to the cross-validation tolerance in one basis of every row's
    span (clf.train.linear_head.held_out's span): the same answers as inspect's tight heads."""
    from clf.train.oof import solved_out_of_fold

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = (rng.normal(size=(3, 64))[labels] + 1.5 * rng.normal(size=(120, 64))).astype(np.float32)
    for width in (64, 200):  # more rows than features, and fewer (the Gram route)
        x = np.concatenate([features, rng.normal(size=(120, width - 64)).astype(np.float32)], axis=1)
        tight = solved_out_of_fold(x, labels, ["a", "b", "c"], folds=4, l2=0.1, seed=3)
        fast = solved_out_of_fold(x, labels, ["a", "b", "c"], folds=4, l2=0.1, seed=3, tight=False)
        assert (tight.fold == fast.fold).all()
        np.testing.assert_allclose(fast.probabilities, tight.probabilities, atol=5e-3)
        assert (fast.probabilities.argmax(1) == tight.probabilities.argmax(1)).mean() >= 0.99
