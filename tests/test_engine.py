"""End to end through the Python API: real Keras models on generated images."""

import json

import numpy as np
import pytest

import clf
from clf import DataError, RecordingObserver, UnknownComponentError, UsageError
from conftest import SMALL_BACKBONE, SMALL_SIZE


def test_run_trains_exports_and_the_h5_predicts_the_same(trained_run):
    # The session's shared run: small_config(epochs=2, augment=True), recorded by an observer.
    result, obs = trained_run.result, trained_run.observer
    assert result.class_names == ["ant", "bee", "cat"]
    assert len(result.history["loss"]) == 2 and "validation_accuracy" in result.metrics
    assert [e[2] for e in obs.events if e[0] == "epoch_end"] == [1, 2]
    assert any("random weights" in n for n in obs.notes())
    files = {p.name for p in result.artifacts["h5"]}
    assert files == {"model.h5", "model.weights.h5"}
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert labels["class_names"] == ["ant", "bee", "cat"]
    assert labels["backbone"] == SMALL_BACKBONE and labels["input_size"] == [SMALL_SIZE, SMALL_SIZE]
    assert labels["preprocessing"]["mode"] == "mobilenet"  # SMALL_BACKBONE's own preprocess_input
    assert labels["artifacts"] == {"h5": ["model.h5", "model.weights.h5"]}

    predictor = clf.load_predictor(result.run_dir)
    x = np.random.default_rng(0).uniform(0, 255, (3, SMALL_SIZE, SMALL_SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict_batch(x), result.outputs(x), atol=1e-5)  # probabilities, known score
    assert predictor.class_names == ["ant", "bee", "cat"]


def test_backbone_stays_frozen(trained_run):
    result = trained_run.result
    base = result.classifier.backbone
    assert not base.trainable and base.trainable_weights == []
    assert len(result.model.trainable_weights) == 2  # the head's kernel and bias


def test_classes_mismatch_names_the_folders(small_config):
    with pytest.raises(DataError, match=r"--classes 4 but .* has 3 class folders \(ant, bee, cat\)\. Pass --classes 3"):
        clf.run(small_config(classes=4))


def test_unknown_names_fail_before_any_work(small_config, tmp_path):
    with pytest.raises(UnknownComponentError, match="Unknown backbone 'vgg61'.*vgg16.*Run 'clf backbones'"):
        clf.run(small_config(backbone="vgg61"))
    with pytest.raises(UnknownComponentError, match="Unknown exporter 'zip'"):
        clf.run(small_config(export="h5,zip"))
    assert not (tmp_path / "run").exists()


def test_image_size_below_backbone_minimum(small_config):
    with pytest.raises(UsageError, match="below the minimum of 75 pixels for backbone 'inception_v3'"):
        clf.run(small_config(backbone="inception_v3", image_size=40))


def test_output_folder_is_never_overwritten(small_config, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="already exists and is not empty"):
        clf.run(small_config())
    assert (tmp_path / "run" / "keep.txt").read_text() == "x"


def test_runs_without_output_get_distinct_folders(small_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = clf.run(small_config(output=None))
    b = clf.run(small_config(output=None))
    assert a.run_dir != b.run_dir and a.run_dir.parent.name == "runs"
    assert a.run_dir.name.endswith(SMALL_BACKBONE)


def test_head_options_add_hidden_layer_and_dropout(small_config):
    result = clf.run(small_config(hidden_units=8, dropout=0.5))
    names = [layer.name for layer in result.classifier.head.layers]
    assert "head_hidden" in names and "head_dropout" in names


def test_seed_zero_runs(small_config):
    """--seed 0 once crashed while tracing the per-epoch shuffle (TensorFlow's graph-seed check)."""
    a = clf.run(small_config(seed=0, epochs=2))
    assert len(a.history["loss"]) == 2
    b = clf.run(small_config(seed=0, epochs=2, output=a.config.output + "-again"))
    assert b.history["loss"] == pytest.approx(a.history["loss"], rel=1e-6)
