"""Run with the plugin installed: ``pip install . && python -m pytest tests``."""

import clf


def test_scratch_cnn_is_registered_by_this_package():
    host = clf.PluginHost()
    backbone = host.backbones.get("scratch_cnn")
    assert backbone.trainable and backbone.preprocess == "scratch_cnn_rescale"
    info = host.infos[backbone.plugin]
    assert info.distribution == "clf-scratch-cnn" and info.hooks == ["register_backbones"]


def test_scratch_cnn_builds_the_tutorial_layers_with_the_listed_params():
    import clf_scratch_cnn

    model = clf_scratch_cnn.build((100, 100, 3), None)
    assert model.output_shape == (None, 256)
    assert model.count_params() == clf_scratch_cnn._params(100)
    assert [l.name for l in model.layers[1:]] == ["conv1", "pool1", "conv2", "pool2", "flatten",
                                                  "dense256", "dropout"]
