"""Every registered backbone honours the contract: headless, pooled [None, features],
built with weights=None at a small input, with a preprocessing that keeps the shape."""

import numpy as np
import pytest

import keras
from clf import PluginHost
from clf.train.model import build_backbone
from clf.data.preprocessing import Preprocess

HOST = PluginHost(entry_points=False)


@pytest.mark.parametrize("name", HOST.backbones.names())
def test_backbone_contract(name):
    backbone = HOST.backbones.get(name)
    size = max(backbone.min_size, 32)
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    pre = keras.ops.convert_to_numpy(Preprocess(backbone.preprocess)(x))
    assert pre.shape == x.shape
    model = build_backbone(backbone, (size, size), None)
    assert tuple(model.output_shape) == (None, backbone.features)
    assert model.count_params() == backbone.params
    assert not model.trainable
    assert keras.ops.convert_to_numpy(model(pre, training=False)).shape == (1, backbone.features)
    keras.backend.clear_session()
