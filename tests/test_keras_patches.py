"""The private Keras attributes clf replaces (clf.host.keras_patches) are still there, take
what clf passes, and are still what Keras calls; each failure names the versions."""

import numpy as np
import pytest

from clf.host import keras_patches
from clf.report.runrecord import versions


def _fail_with_versions(what: str) -> str:
    return (f"{what} under {versions()}: clf.host.keras_patches needs updating for this "
            f"version (the weights mirror and hash check, or multi-worker fit, rely on it).")


def test_every_patched_private_attribute_is_there_with_the_expected_signature():
    found = keras_patches.problems()
    assert not found, _fail_with_versions("; ".join(found))


def test_keras_applications_download_through_the_replaced_get_file():
    import keras

    calls = []

    class Stop(Exception):
        pass

    def get_file(fname=None, origin=None, *args, **kwargs):
        calls.append((fname, origin, kwargs))
        raise Stop

    with pytest.raises(Stop), keras_patches.replaced_get_file(get_file) as original:
        keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights="imagenet")
    from keras.src.utils import file_utils

    assert file_utils.get_file is original, _fail_with_versions("get_file was not restored")
    assert calls, _fail_with_versions("keras.applications.MobileNetV2 did not download through file_utils.get_file")
    fname, origin, kwargs = calls[0]
    assert fname.endswith(".h5") and origin.startswith("https://"), calls[0]
    assert kwargs.get("cache_subdir") == "models", _fail_with_versions(f"get_file was called with {kwargs}")


def test_fit_calls_the_replaced_symbolic_build():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    calls = []
    keras_patches.replace_symbolic_build(model, lambda iterator=None, data_batch=None: calls.append(iterator))
    model.fit(np.zeros((4, 3), "float32"), np.zeros(4, "int32"), epochs=1, verbose=0)
    assert calls, _fail_with_versions("Model.fit no longer calls _maybe_symbolic_build")
