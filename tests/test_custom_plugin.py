"""A third-party plugin registered in a fixture: its backbone is listed and trains."""

import pytest

import clf
from clf import hookimpl
from clf.cli import app


class TinyBackbonePlugin:
    """A throwaway plugin providing a 2-conv backbone with its own preprocessing."""

    @hookimpl
    def register_backbones(self, register):
        def build(input_shape, weights):
            import keras

            inp = keras.Input(input_shape)
            x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
            x = keras.layers.GlobalAveragePooling2D()(x)
            return keras.Model(inp, x, name="tiny")

        register("tiny_cnn", build, preprocess="rescale", input_size=(32, 32), params=112,
                 features=4, description="A two-layer test backbone")


@pytest.fixture
def tiny_host(host):
    host.register(TinyBackbonePlugin(), name="tiny-plugin")
    yield host
    host.unregister("tiny-plugin")


def test_custom_backbone_is_listed_and_trains(tiny_host, small_config, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setattr("clf.host.manager._default_host", tiny_host)
    listing = CliRunner().invoke(app, ["backbones", "--json"])
    assert listing.exit_code == 0
    assert '"tiny_cnn"' in listing.output and '"tiny-plugin"' in listing.output

    result = clf.run(small_config(backbone="tiny_cnn", verify=True), host=tiny_host)
    assert result.classifier.backbone.name == "tiny"
    assert result.classifier.preprocess == "rescale"
    assert (result.run_dir / "model.h5").is_file()
