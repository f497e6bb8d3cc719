"""register_backbones with preprocess= a function: accepted under '<plugin>.<backbone>', listed
(JSON too), trained, and the saved model reloads wherever the plugin is loaded. A value that
is neither a name nor a function is refused naming the plugin; the rest keeps working."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app

runner = CliRunner()

PLUGIN = '''
import clf


def halve(x):  # what a plugin author writes: a plain function, not a registered mode name
    return x / 127.5 - 1.0


def build(input_shape, weights):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="fn_cnn")


@clf.hookimpl
def register_backbones(register):
    register("fn_cnn", build, preprocess=halve, input_size=(32, 32), features=4)
'''


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "fn_plugin.py"
    path.write_text(PLUGIN)
    return path


def test_a_function_as_preprocess_is_listed_under_a_derived_name(plugin_file):
    # In a real process: this listing crashed with "Object of type function is not JSON serializable".
    done = subprocess.run([sys.executable, "-m", "clf.cli", "backbones", "--json", "--plugin", str(plugin_file)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = next(r for r in json.loads(done.stdout) if r["name"] == "fn_cnn")
    assert row["preprocess"] == "fn_plugin.fn_cnn" and row["plugin"] == str(plugin_file)
    table = runner.invoke(app, ["backbones", "--plugin", str(plugin_file)])
    assert table.exit_code == 0 and "fn_plugin.fn_cnn" in table.output


def test_it_trains_and_the_saved_model_reloads_with_the_plugin(plugin_file, small_config):
    from clf.host.manager import PluginHost

    host = PluginHost([str(plugin_file)])
    result = clf.run(small_config(backbone="fn_cnn", image_size=None, verify=True), host=host)
    assert result.classifier.preprocess == "fn_plugin.fn_cnn"
    # The preprocessing in the model is the plugin's function: x/127.5 - 1 in front of the CNN.
    layer = next(layer for layer in result.model.layers if type(layer).__name__ == "Preprocess")
    assert float(np.asarray(layer(np.full((1, 2, 2, 3), 255.0, np.float32))).max()) == pytest.approx(1.0)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    # A new host (the plugin imported again: a new function object) reloads the model.
    fresh = PluginHost([str(plugin_file)])
    predictor = clf.load_predictor(result.run_dir / "model.h5", fresh)
    np.testing.assert_allclose(predictor.predict_batch(x), result.outputs(x), atol=1e-5)


def test_a_preprocess_that_is_neither_refuses_the_plugin_and_nothing_else(host):
    class Odd:
        @clf.hookimpl
        def register_backbones(self, register):
            register("odd_cnn", lambda shape, weights: None, preprocess=42)

    with pytest.raises(clf.PluginError, match="'odd-plugin'.*preprocess=42.*a mode name.*or a function"):
        host.register(Odd(), name="odd-plugin")
    assert "odd_cnn" not in host.backbones and "vgg16" in host.backbones  # the rest is intact


def test_a_mode_nobody_registered_fails_before_any_work(host, small_config):
    class Unregistered:
        @clf.hookimpl
        def register_backbones(self, register):
            register("ghost_cnn", lambda shape, weights: None, preprocess="ghost_mode")

    host.register(Unregistered(), name="ghost-plugin")
    recorder = clf.RecordingObserver()
    with pytest.raises(clf.PluginError, match="'ghost_cnn'.*'ghost-plugin'.*'ghost_mode'"):
        clf.run(small_config(backbone="ghost_cnn"), recorder, host)
    assert recorder.events == []
