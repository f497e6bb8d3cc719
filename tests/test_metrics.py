"""clf.report.metrics: numpy-only scores checked against values worked out by hand."""

import numpy as np
import pytest

from clf.report.metrics import (confusion_matrix, confusion_matrix_csv, cross_entropy, evaluation_report,
                         most_confused, top_k_accuracy)

NAMES = ["ant", "bee", "cat"]


def one_hot_probs(pred, n=3, confidence=0.8):
    probs = np.full((len(pred), n), (1 - confidence) / (n - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [2, 0, 1]]


def test_report_per_class_scores_by_hand():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 0]
    report = evaluation_report(y_true, one_hot_probs(y_pred), NAMES)
    assert report["images"] == 6 and report["accuracy"] == pytest.approx(3 / 6)
    ant, bee, cat = (report["per_class"][n] for n in NAMES)
    # ant: predicted 3 times, 1 right; 2 true ants, 1 found
    assert ant["precision"] == pytest.approx(1 / 3) and ant["recall"] == pytest.approx(1 / 2)
    assert ant["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2)) and ant["support"] == 2
    assert bee["precision"] == pytest.approx(1 / 2) and bee["recall"] == 1.0 and bee["support"] == 1
    assert cat["precision"] == 1.0 and cat["recall"] == pytest.approx(1 / 3) and cat["support"] == 3
    assert report["macro_f1"] == pytest.approx(np.mean([ant["f1"], bee["f1"], cat["f1"]]))
    assert report["most_confused"][0] == {"true": "cat", "predicted": "ant", "count": 2,
                                          "fraction_of_true": pytest.approx(2 / 3)}
    assert [(p["true"], p["predicted"]) for p in report["most_confused"]] == [("cat", "ant"), ("ant", "bee")]


def test_class_never_predicted_has_precision_zero_not_nan():
    report = evaluation_report([0, 1, 2], one_hot_probs([0, 0, 0]), NAMES)
    assert report["per_class"]["bee"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_top_k_only_below_the_number_of_classes():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    y = [1, 1, 2]  # true class ranks: 2nd, 2nd, 3rd
    assert top_k_accuracy(y, probs, 1) == 0.0
    assert top_k_accuracy(y, probs, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(y, probs, 3) == 1.0
    assert evaluation_report(y, probs, NAMES)["top_k_accuracy"] == {"2": pytest.approx(2 / 3)}
    six = evaluation_report([0], np.eye(6)[[0]], list("abcdef"))
    assert set(six["top_k_accuracy"]) == {"2", "3", "5"}
    assert evaluation_report([0], np.eye(2)[[0]], ["a", "b"])["top_k_accuracy"] == {}


def test_csv_and_loss():
    report = evaluation_report([0, 1], one_hot_probs([0, 2]), NAMES, loss=0.25)
    assert confusion_matrix_csv(report) == "true\\predicted,ant,bee,cat\nant,1,0,0\nbee,0,0,1\ncat,0,0,0\n"
    assert report["loss"] == 0.25
    assert cross_entropy([0, 1], np.array([[0.5, 0.5], [0.25, 0.75]])) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)


def test_most_confused_limit_and_perfect_predictions():
    cm = np.array([[5, 0], [0, 5]])
    assert most_confused(cm, ["a", "b"]) == []
    big = np.ones((4, 4), int)
    assert len(most_confused(big, list("abcd"), limit=3)) == 3
