"""The example plugin packages in examples/, pip-installed: listed with their distribution
and version, and a run works with each."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE

runner = CliRunner()


def test_example_packages_are_listed_with_distribution_and_version(installed_plugins, monkeypatch):
    monkeypatch.setenv("CLF_LOAD_PLUGINS", "scratch_cnn,clf-csv-loader")  # entry point or dist name
    res = runner.invoke(app, ["plugins", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    cnn, loader = rows["scratch_cnn"], rows["csv"]
    assert (cnn["distribution"], cnn["version"], cnn["origin"], cnn["builtin"]) == ("clf-scratch-cnn", "0.1.0", "entrypoint", False)
    assert cnn["hooks"] == ["register_backbones"] and cnn["components"] == {"backbones": ["scratch_cnn"]}
    assert cnn["module"] == "clf_scratch_cnn" and cnn["status"] == "loaded"
    assert (loader["distribution"], loader["version"]) == ("clf-csv-loader", "0.1.0")
    assert loader["components"] == {"loaders": ["csv"]}
    assert not any(name.startswith("broken") for name in rows)  # not named in CLF_LOAD_PLUGINS

    table = runner.invoke(app, ["plugins"]).stdout
    assert "clf-scratch-cnn" in table and "clf-csv-loader" in table and "(built-in)" in table
    backbones = json.loads(runner.invoke(app, ["backbones", "--json"]).stdout)
    cnn_row = next(r for r in backbones if r["name"] == "scratch_cnn")
    assert cnn_row["plugin"] == "scratch_cnn" and cnn_row["preprocess"] == "scratch_cnn_rescale"


def test_scratch_cnn_trains_from_scratch_with_its_own_preprocessing(installed_plugins, small_config):
    host = clf.PluginHost(only=["scratch_cnn"])
    backbone = host.backbones.get("scratch_cnn")
    assert backbone.trainable and backbone.input_size == (100, 100)
    untrained = backbone.build((SMALL_SIZE, SMALL_SIZE, 3), None)
    assert untrained.count_params() == 3 * 3 * 3 * 32 + 32 + 2 * 2 * 32 * 64 + 64 + 8 * 8 * 64 * 256 + 256

    result = clf.run(small_config(backbone="scratch_cnn", epochs=2), host=host)
    assert result.classifier.preprocess == "scratch_cnn_rescale"
    assert result.classifier.backbone.trainable, "a from-scratch backbone must not be frozen"
    # Trained, not frozen: the conv kernels moved from their initial values (the engine
    # seeds Keras with config.seed before building, so a rebuild gives the initial ones).
    import keras

    keras.utils.set_random_seed(result.config.seed)
    initial = backbone.build((SMALL_SIZE, SMALL_SIZE, 3), None).get_layer("conv1").get_weights()[0]
    trained = result.classifier.backbone.get_layer("conv1").get_weights()[0]
    assert initial.shape == trained.shape and not np.allclose(initial, trained)
    metadata = json.loads((result.run_dir / "labels.json").read_text())
    assert metadata["preprocessing"]["mode"] == "scratch_cnn_rescale"
    predictor = clf.load_predictor(result.run_dir, host)
    images = np.random.default_rng(0).uniform(0, 255, (2, SMALL_SIZE, SMALL_SIZE, 3)).astype("float32")
    assert np.allclose(predictor.predict_batch(images), result.predict(images), atol=1e-5)


def test_scratch_cnn_asked_for_imagenet_weights_says_what_to_pass(installed_plugins, small_config):
    host = clf.PluginHost(only=["scratch_cnn"])
    with pytest.raises(clf.WeightsError, match="no ImageNet weights.*--weights none"):
        clf.run(small_config(backbone="scratch_cnn", weights="imagenet"), host=host)


def test_csv_loader_run_with_paths_relative_to_the_manifest(installed_plugins, image_folder, tmp_path):
    manifest = image_folder / "labels" / "manifest.csv"
    manifest.parent.mkdir()
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        for cls in ("ant", "bee", "cat"):
            for i in range(6):
                # Labels need not be folder names; the last image of each class is validation.
                writer.writerow([f"../{cls}/{cls}_{i}.jpg", cls.upper(), "val" if i == 5 else ""])
    res = runner.invoke(app, ["run", "--loader", "csv", "--data", str(manifest), "--backbone", SMALL_BACKBONE,
                              "--image-size", str(SMALL_SIZE), "--weights", "none", "--epochs", "1",
                              "--batch-size", "4", "--no-augment", "--output", str(tmp_path / "run")],
                        env={"CLF_LOAD_PLUGINS": "csv"})
    assert res.exit_code == 0, res.output
    assert "classes: ANT, BEE, CAT" in res.stdout
    assert "train: 15 images (ANT 5, BEE 5, CAT 5)" in res.stdout
    assert "validation: 3 images (ANT 1, BEE 1, CAT 1)" in res.stdout
    labels = json.loads((tmp_path / "run" / "labels.json").read_text())
    assert labels["class_names"] == ["ANT", "BEE", "CAT"]
