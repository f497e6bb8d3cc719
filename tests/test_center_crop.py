"""The centre crop: its geometry, the config value, and that prediction crops exactly as
training did because the crop travels in labels.json."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import clf
from clf.config import config_from_file
from clf.data.images import ImageSize, _center_box, decode_image, files_dataset
from clf.report.runrecord import write_config
from conftest import SMALL_SIZE


@pytest.mark.parametrize("photo, size, fraction, box", [
    ((375, 500), (224, 224), 0.875, (328, 328)),  # ImageNet's crop of a typical photo
    ((375, 500), (224, 224), 1.0, (375, 375)),  # the largest centred square
    ((128, 128), (224, 224), 0.875, (128, 128)),  # smaller than the input: nothing cut
    ((240, 300), (224, 224), 0.875, (224, 224)),  # cut no further than the input size
    ((375, 500), (100, 200), 0.5, (125, 250)),  # the input's aspect ratio is kept
])
def test_crop_box_geometry(photo, size, fraction, box):
    assert tuple(_center_box(tf.zeros((*photo, 3)), size, fraction).shape[:2]) == box


def _photo(path, h=120, w=160, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return pixels


def test_decoding_crops_the_centre_then_resizes(tmp_path):
    pixels = _photo(tmp_path / "p.png")
    got = decode_image(tf.io.read_file(str(tmp_path / "p.png")), ImageSize((32, 32), 0.5)).numpy()
    centre = pixels[30:90, 50:110]  # 0.5 of the largest centred square (120 px)
    want = tf.image.resize(centre, (32, 32), method="bilinear", antialias=True).numpy()
    np.testing.assert_allclose(got, want, atol=1e-3)
    whole = decode_image(tf.io.read_file(str(tmp_path / "p.png")), (32, 32)).numpy()
    assert np.abs(whole - got).max() > 10  # a plain (h, w) pair resizes the whole photo


def test_config_accepts_none_and_rejects_out_of_range(tmp_path):
    assert clf.RunConfig().center_crop == 0.875
    assert clf.RunConfig(center_crop="none").center_crop == 0.0
    assert clf.RunConfig(center_crop="0.9").center_crop == 0.9
    for bad in (1.5, -0.1, "middle", True):
        with pytest.raises(clf.ConfigError, match="center_crop"):
            clf.RunConfig(center_crop=bad)
    write_config(tmp_path, clf.RunConfig(center_crop=0))  # "no crop" survives the TOML round trip
    assert config_from_file(tmp_path / "config.toml", {}).center_crop == 0.0


def test_prediction_crops_as_training_did(small_config, tmp_path):
    result = clf.run(small_config(center_crop=0.5, epochs=2, verify=True))
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert labels["resize"]["center_crop"] == 0.5
    files = sorted(str(p) for p in (tmp_path / "data").rglob("*.jpg"))
    predictor = clf.load_predictor(result.run_dir)
    got = np.array([p.probabilities for p in clf.predict_files(predictor, files)])

    def model_on(size):
        images = np.stack([x.numpy() for x, _ in files_dataset(files, [0] * len(files), size)])
        return result.model.predict(images, verbose=0)[:, :len(result.class_names)]  # (then the known score)

    np.testing.assert_allclose(got, model_on(ImageSize((SMALL_SIZE, SMALL_SIZE), 0.5)), atol=1e-5)
    assert np.abs(got - model_on((SMALL_SIZE, SMALL_SIZE))).max() > 1e-4
    # A bundle from before crops were recorded resized the whole photo: so does predict.
    del labels["resize"]
    (result.run_dir / "labels.json").write_text(json.dumps(labels))
    assert clf.load_predictor(result.run_dir).decode_size.center_crop == 0.0


def test_another_crop_misses_the_feature_cache(small_config, tmp_path, feature_cache_dir, trained_run):
    # The shared run's cache: the same images, backbone, size and crop as small_config's.
    shutil.copytree(trained_run.cache, feature_cache_dir / "features")  # $CLF_CACHE_DIR/features
    again = clf.run(small_config(output=str(tmp_path / "same")))
    assert again.extraction["train"]["extracted"] == 0
    other = clf.run(small_config(center_crop=0, output=str(tmp_path / "other")))
    assert other.extraction["train"] == {"extracted": 15, "cached": 0}


def test_decoder_keeps_its_earlier_method_names_for_plugins(tmp_path):
    _photo(tmp_path / "p.png")
    decoder = clf.Decoder(ImageSize((32, 32), 0.5))
    want = decoder.from_file(tmp_path / "p.png")
    np.testing.assert_array_equal(decoder.file(tmp_path / "p.png"), want)
    np.testing.assert_array_equal(decoder.bytes((tmp_path / "p.png").read_bytes()), want)
    np.testing.assert_array_equal(decoder.array(decoder.from_bytes((tmp_path / "p.png").read_bytes())),
                                  decoder.from_array(want))
