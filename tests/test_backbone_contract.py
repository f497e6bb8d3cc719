"""Every registered backbone honours the contract: headless, pooled [None, features],
built with weights=None at a small input, with a preprocessing that keeps the shape.

The smallest backbone of each family (backbones sharing a preprocessing, i.e. a Keras
applications module) runs in the unit suite; the larger variants (another depth or width of
the same builder, and its recorded parameter count) are slow checks."""

import numpy as np
import pytest

import keras
from clf import PluginHost
from clf.train.model import build_backbone
from clf.data.preprocessing import Preprocess

HOST = PluginHost(entry_points=False)


def _names() -> list:
    """Every backbone; all but the smallest of each family (its preprocessing, i.e. its Keras
    applications module) marked slow."""
    by_size = sorted(HOST.backbones.names(), key=lambda n: HOST.backbones.get(n).params or 0)
    smallest: dict[str, str] = {}
    for name in by_size:
        smallest.setdefault(HOST.backbones.get(name).preprocess, name)
    fast = set(smallest.values())
    return [name if name in fast else pytest.param(name, marks=pytest.mark.slow)
            for name in HOST.backbones.names()]


def test_every_family_has_a_backbone_in_the_unit_suite():
    fast = [n for n in _names() if isinstance(n, str)]
    assert {"vgg16", "resnet50", "resnet50_v2", "mobilenet_v2_035", "efficientnet_b0", "convnext_tiny"} <= set(fast)
    assert len(fast) < len(HOST.backbones.names()) / 2


@pytest.mark.parametrize("name", _names())
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
