"""Class weights: the balanced formula, the auto rule and its note, and the engine using them."""

import pytest

import clf
from clf.train.class_weights import balanced_weights, choose_class_weights
from conftest import make_image


def test_balanced_weights_give_every_class_the_same_total():
    w = balanced_weights([30, 10, 5])
    assert w == pytest.approx({0: 45 / 90, 1: 45 / 30, 2: 45 / 15})
    assert 30 * w[0] == pytest.approx(10 * w[1]) == pytest.approx(5 * w[2])


def test_auto_balances_only_above_three_to_one_and_says_so():
    names = ["ant", "bee"]
    assert choose_class_weights("auto", [30, 10], names) == (None, None)  # exactly 3x: not over
    weights, note = choose_class_weights("auto", [31, 10], names)
    assert weights == pytest.approx(balanced_weights([31, 10]))
    assert "'ant' has 3.1x the images of 'bee'" in note and "--class-weight none" in note
    assert choose_class_weights("none", [100, 1], names) == (None, None)
    weights, note = choose_class_weights("balanced", [10, 10], names)
    assert weights == {0: 1.0, 1: 1.0} and note is None


def test_engine_notes_auto_balancing_on_an_imbalanced_folder(small_config, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    root = tmp_path / "imb"
    for i in range(16):
        make_image(root / "ant" / f"a{i}.jpg", 0, rng)
    for i in range(4):
        make_image(root / "bee" / f"b{i}.jpg", 1, rng)
    obs = clf.RecordingObserver()
    clf.run(small_config(data=str(root)), obs)
    # One note on the imbalance, saying what --class-weight auto does about it.
    (note,) = [n for n in obs.notes() if "imbalanced" in n]
    assert "--class-weight auto balances the class weights" in note
    obs = clf.RecordingObserver()
    clf.run(small_config(data=str(root), class_weight="none", output=str(tmp_path / "run2")), obs)
    assert not any("class weights" in n for n in obs.notes())
