import numpy as np
import pytest

import keras
from clf import PluginError
from clf.data.preprocessing import Preprocess, get_preprocess, preprocess_modes, register_preprocess


def test_vgg16_mode_is_bgr_mean_subtraction_not_rescale():
    x = np.full((1, 2, 2, 3), 100.0, np.float32)
    x[..., 0] = 200.0  # red channel
    y = keras.ops.convert_to_numpy(Preprocess("vgg16")(x))
    # caffe mode: RGB -> BGR, minus the ImageNet BGR means; red ends up last.
    np.testing.assert_allclose(y[0, 0, 0], [100 - 103.939, 100 - 116.779, 200 - 123.68], rtol=1e-5)


def test_tf_mode_scales_to_minus_one_one():
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    y = keras.ops.convert_to_numpy(Preprocess("mobilenet_v2")(x))
    np.testing.assert_allclose(y.ravel(), [-1.0, 0.0, 1.0], atol=1e-6)


def test_layer_round_trips_through_keras_and_h5(tmp_path):
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, Preprocess("resnet")(inp))
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        again = keras.models.load_model(tmp_path / name, compile=False)
        np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_unknown_mode_and_duplicate_registration():
    with pytest.raises(PluginError, match="Unknown preprocessing mode 'nope'"):
        Preprocess("nope")
    with pytest.raises(PluginError, match="already registered"):
        register_preprocess("vgg16", lambda x: x)
    assert "none" in preprocess_modes() and get_preprocess("rescale")(255.0) == 1.0
