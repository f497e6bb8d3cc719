"""One contract test per hook (``test_hook_<hook name>``; test_plugin_docs checks that every
hookspec has one): what the engine passes to the registered callables, and what it expects
back. One recorded run serves the loader, head, exporter and callback hooks."""

import json

import numpy as np
import pytest

import clf
from clf import PluginError, PluginHost, hookimpl
from clf.train.model import build_classifier
from conftest import SMALL_SIZE, make_folder


class Recorder:
    """A plugin implementing every hook, recording how clf calls what it registered."""

    def __init__(self):
        self.calls = {}
        self.builds = 0

    @hookimpl
    def register_backbones(self, register):
        def build(input_shape, weights):
            import keras

            self.builds += 1
            self.calls["backbone"] = {"input_shape": input_shape, "weights": weights}
            inputs = keras.Input(input_shape)
            x = keras.layers.Conv2D(4, 3, name="rec_conv")(inputs)
            return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="rec_backbone")

        def flat(input_shape, weights):
            import keras

            inputs = keras.Input(input_shape)
            return keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))  # not pooled: wrong

        register("rec_backbone", build, preprocess="rescale", input_size=(48, 40), params=112, features=4)
        register("rec_scratch", build, preprocess="none", trainable=True)
        register("rec_unpooled", flat, preprocess="none")

    @hookimpl
    def register_heads(self, register):
        def build(features, num_classes, **options):
            import keras

            self.calls["head"] = {"features": tuple(features.shape), "num_classes": num_classes, "options": options}
            return keras.layers.Dense(num_classes, activation="softmax")(features)

        register("rec_head", build, description="records its call")

    @hookimpl
    def register_data_loaders(self, register):
        from clf.plugins.directory_loader import load_directory

        def load(source, **kwargs):
            self.calls["loader"] = {"source": source, **kwargs}
            return load_directory(source, **kwargs)

        register("rec_loader", load)

    @hookimpl
    def register_exporters(self, register):
        def export(model, directory, metadata):
            self.calls["export"] = {"directory": directory, "metadata": dict(metadata)}
            path = directory / "rec.keras"
            model.save(str(path))
            return [path]

        def load(path, labels):
            self.calls["exporter_load"] = {"path": path, "labels": labels}
            from clf.artifacts.predict import KerasPredictor

            return KerasPredictor(path, labels)

        register("rec_export", export, load=load)

    @hookimpl
    def register_callbacks(self, register):
        import keras

        epochs = self.calls.setdefault("epochs", [])

        class CountEpochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                epochs.append(epoch)

        def make(config, run_dir):
            self.calls["callback"] = {"config": config, "run_dir": run_dir}
            return CountEpochs()

        def finish(result):  # once, after the run folder is complete
            self.calls.setdefault("finish", []).append((result, (result.run_dir / "manifest.json").is_file()))

        register("rec_epochs", make, finish=finish)
        register("rec_off", lambda config, run_dir: None)  # stays out of the run


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hooks")
    data = make_folder(root / "data", split_dirs=True)
    recorder = Recorder()
    host = PluginHost(only="")
    host.register(recorder, name="recorder")
    assert recorder.builds == 0, "registering must build nothing"
    config = clf.RunConfig(backbone="rec_backbone", head="rec_head", loader="rec_loader",
                           export=("rec_export", "h5"), data=str(data), weights="none", epochs=2,
                           batch_size=4, image_size=SMALL_SIZE, output=str(root / "run"), augment=False,
                           dropout=0.25, hidden_units=3, seed=7, validation_split=0.3)
    result = clf.run(config, host=host)
    return recorder, host, result


def test_hook_register_backbones(recorded, tmp_path):
    recorder, host, result = recorded
    backbone = host.backbones.get("rec_backbone")
    assert (backbone.plugin, backbone.input_size, backbone.params, backbone.features) == ("recorder", (48, 40), 112, 4)
    assert recorder.calls["backbone"] == {"input_shape": (SMALL_SIZE, SMALL_SIZE, 3), "weights": None}
    assert not result.classifier.backbone.trainable, "a pretrained-style backbone is frozen"
    assert result.classifier.model.get_layer("preprocess").mode == "rescale"
    scratch = build_classifier(host.backbones.get("rec_scratch"), host.heads.get("softmax"), 2,
                               (SMALL_SIZE, SMALL_SIZE), str(tmp_path / "w.weights.h5"), {})
    assert scratch.backbone.trainable, "trainable=True: trained with the head"
    assert recorder.calls["backbone"]["weights"] == str(tmp_path / "w.weights.h5")  # passed through
    with pytest.raises(PluginError, match="'rec_unpooled' \\(plugin 'recorder'\\) outputs shape .*pooled"):
        build_classifier(host.backbones.get("rec_unpooled"), host.heads.get("softmax"), 2, (SMALL_SIZE, SMALL_SIZE), None, {})


def test_hook_register_heads(recorded):
    recorder, host, result = recorded
    call = recorder.calls["head"]
    assert call["features"] == (None, 4) and call["num_classes"] == 3
    assert call["options"] == {"dropout": 0.25, "hidden_units": 3}
    assert result.classifier.head.output_shape == (None, 3)
    assert result.model.output_shape == (None, 4)  # then the known score (Mahalanobis: not a linear head)


def test_hook_register_data_loaders(recorded):
    recorder, host, result = recorded
    call = recorder.calls["loader"]
    assert call["source"] == result.config.data
    documented = {k: call[k] for k in ("source", "image_size", "seed", "validation_split")}
    assert documented == {"source": result.config.data, "image_size": (SMALL_SIZE, SMALL_SIZE), "seed": 7,
                          "validation_split": 0.3}
    # A loader taking **kwargs also gets the dataset doctor's lists (nothing bad in this data).
    assert set(call) - set(documented) <= {"skip", "substitute"}
    assert not call.get("skip") and not call.get("substitute")
    assert result.class_names == ["ant", "bee", "cat"]
    assert result.counts["train"] == {"ant": 6, "bee": 6, "cat": 6}


def test_hook_register_exporters(recorded):
    recorder, host, result = recorded
    call = recorder.calls["export"]
    assert call["directory"] == result.run_dir
    assert call["metadata"]["class_names"] == ["ant", "bee", "cat"]
    assert call["metadata"]["input_size"] == [SMALL_SIZE, SMALL_SIZE]
    assert result.artifacts["rec_export"] == [result.run_dir / "rec.keras"]
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert labels["artifacts"]["rec_export"] == ["rec.keras"]  # clf writes labels.json, not the exporter
    predictor = clf.load_predictor(result.run_dir / "rec.keras", host)
    assert recorder.calls["exporter_load"]["path"] == result.run_dir / "rec.keras"
    assert recorder.calls["exporter_load"]["labels"]["class_names"] == ["ant", "bee", "cat"]
    images = np.full((1, SMALL_SIZE, SMALL_SIZE, 3), 100, np.float32)
    assert np.allclose(predictor.predict_batch(images), result.outputs(images), atol=1e-5)


def test_hook_register_callbacks(recorded):
    recorder, host, result = recorded
    assert recorder.calls["callback"]["config"] is result.config
    assert recorder.calls["callback"]["run_dir"] == result.run_dir
    assert recorder.calls["epochs"] == [0, 1]
    assert {c.name for c in host.callbacks} >= {"rec_epochs", "rec_off"}
    assert recorder.calls["finish"] == [(result, True)]
