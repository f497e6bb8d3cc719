"""--tta flip: features averaged with the mirror image's, the same in the cached features,
the in-memory model and every exported format."""

import numpy as np
import pytest

import clf
from clf.artifacts.verify import FLOAT_TOLERANCE
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder

ALL = "h5,keras,savedmodel,tflite,onnx"


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    """One --tta flip run exported in every format (trained once for the module). Without
    export verification: the test below checks every format against the model itself, on
    the images and their mirror images."""
    root = tmp_path_factory.mktemp("tta")
    data = make_folder(root / "data", per_class=8)
    config = clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=1, batch_size=4,
                           image_size=SMALL_SIZE, output=str(root / "run"), augment=False, export=ALL,
                           tta="flip", cache_dir=str(root / "cache"), verify=False)
    return clf.run(config), config, root


def _images(n=6, seed=5):
    return np.random.default_rng(seed).uniform(0, 255, (n, SMALL_SIZE, SMALL_SIZE, 3)).astype(np.float32)


def test_every_format_averages_the_mirror_image(flipped):
    result, _, _ = flipped
    images = _images()
    mirrored = images[:, :, ::-1, :]
    reference = result.outputs(images)  # the probabilities and the known score
    np.testing.assert_allclose(result.outputs(mirrored), reference, atol=1e-5)  # mirror-invariant
    for name in ALL.split(","):
        predictor = clf.load_predictor(result.run_dir / result.artifacts[name][0].name)
        got = predictor.predict_batch(images)
        np.testing.assert_allclose(got, reference, atol=FLOAT_TOLERANCE, err_msg=name)
        np.testing.assert_allclose(predictor.predict_batch(mirrored), got, atol=FLOAT_TOLERANCE, err_msg=name)


def test_the_model_is_the_head_on_the_averaged_features(flipped):
    from clf.data.preprocessing import get_preprocess

    result, _, _ = flipped
    c = result.classifier
    images = _images(3)
    pre = get_preprocess(c.preprocess)  # Keras' preprocess_input scales a numpy array in place: copies
    own = c.backbone(pre(images.copy()), training=False).numpy()
    mirror = c.backbone(pre(images[:, :, ::-1, :].copy()), training=False).numpy()
    assert np.abs(own - mirror).max() > 1e-3 * np.abs(own).max()  # the mirror is another view
    np.testing.assert_allclose(result.predict(images), c.head.predict((own + mirror) / 2, verbose=0), atol=1e-5)


def test_flip_features_are_cached_as_their_own_variant(flipped, tmp_path):
    result, config, root = flipped
    warm = clf.run(config.replace(output=str(tmp_path / "warm"), export=("h5",)))  # the cache is the point
    assert warm.extraction["train"]["extracted"] == 0 and warm.extraction["train"]["cached"] > 0
    np.testing.assert_allclose(warm.predict(_images()), result.predict(_images()), atol=1e-6)
    plain = clf.run(config.replace(tta="none", export=("h5",), output=str(tmp_path / "plain")))
    assert plain.extraction["train"]["cached"] == 0  # the flip variant never answers for plain features
    assert not np.allclose(plain.predict(_images()), plain.predict(_images()[:, :, ::-1, :]), atol=1e-5)


def test_a_converted_backbone_is_never_reused_across_flip_and_plain(tmp_path):
    """--runtime tflite converts the extractor; a plain run's stored conversion must not serve
    a --tta flip run in the same cache (that one extracts both views): verification passes
    and the flip run's features are mirror-invariant."""
    data = make_folder(tmp_path / "data", per_class=4)
    base = dict(backbone=SMALL_BACKBONE, data=str(data), weights="none", batch_size=4, image_size=SMALL_SIZE,
                augment=False, runtime="tflite", cache_dir=str(tmp_path / "cache"))
    plain = clf.run(clf.RunConfig(**base, output=str(tmp_path / "plain"), verify=False))
    flip = clf.run(clf.RunConfig(**base, tta="flip", output=str(tmp_path / "flip")))
    assert plain.manifest["runtime"]["name"] == flip.manifest["runtime"]["name"] == "tflite"
    assert flip.verification is not None and not flip.verification.failed
    images = _images()
    np.testing.assert_allclose(flip.predict(images[:, :, ::-1, :]), flip.predict(images), atol=1e-5)
