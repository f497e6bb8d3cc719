"""DCT-scaled JPEG decoding: large JPEGs decode at 1/2, 1/4 or 1/8 only while the scaled
centre box still covers twice the input; their features stay those of the full decode;
smaller photos and other formats decode exactly as before."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import clf
from clf.data.images import ImageSize, _center_box, dct_scale_index, decode_image, decode_pixels
from conftest import DATASETS, MOBILENET_V2_035, require_shared

SIZE = ImageSize((224, 224), 0.875)


def full_decode(path, size=SIZE):
    """decode_image as it was before DCT scaling: full decode (Pillow's pixels: the accurate
    IDCT), centre box, antialiased resize."""
    image = decode_pixels(tf.io.read_file(str(path)))
    if size.center_crop:
        image = _center_box(image, tuple(size), size.center_crop)
    return tf.image.resize(image, tuple(size), method="bilinear", antialias=True).numpy()


@pytest.mark.parametrize("shape, crop, ratio", [
    ((375, 500), 0.875, 1),  # hymenoptera: at 1/2 the 328 px box would be 164 < 2 x 224
    ((128, 128), 0.875, 1),  # flowers5
    ((1200, 1600), 0.875, 2),  # box 1050 -> 525 >= 448 at 1/2; 262 at 1/4
    ((3024, 4032), 0.875, 4),  # 12 MP: box 2646 -> 661 at 1/4; 330 at 1/8
    ((3024, 4032), 0.0, 4),  # no crop: the whole 3024 x 4032 -> 756 x 1008 at 1/4
    ((8000, 8000), 0.875, 8),
    ((600, 6000), 0.875, 1),  # a panorama: its centre box is only 600 px high
])
def test_the_scale_keeps_twice_the_input(shape, crop, ratio):
    index = int(dct_scale_index(tf.constant(shape), (224, 224), crop))
    assert (1, 2, 4, 8)[index] == ratio


def _upscaled(src, path, size, seed, fmt="JPEG"):
    """A real photo upscaled to ``size`` (width, height) with sensor-like noise."""
    photo = Image.open(src).convert("RGB").resize(size, Image.BICUBIC)
    noisy = np.asarray(photo, np.float32) + np.random.default_rng(seed).normal(0, 4, (size[1], size[0], 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, format=fmt, quality=92)
    return path


def test_small_photos_and_other_formats_decode_exactly_as_before(tmp_path):
    photos = sorted((require_shared(DATASETS / "hymenoptera") / "val" / "bees").glob("*.jpg"))[:2]
    for photo in photos:  # 500 px photos: never scaled
        np.testing.assert_array_equal(decode_image(tf.io.read_file(str(photo)), SIZE).numpy(), full_decode(photo))
    png = _upscaled(photos[0], tmp_path / "big.png", (1600, 1200), 0, fmt="PNG")  # large, but no DCT
    np.testing.assert_array_equal(decode_image(tf.io.read_file(str(png)), SIZE).numpy(), full_decode(png))


def test_large_jpegs_keep_the_features_of_the_full_decode(tmp_path):
    photos = sorted((require_shared(DATASETS / "hymenoptera") / "val" / "ants").glob("*.jpg"))[:4]
    require_shared(MOBILENET_V2_035)
    sizes = [(1600, 1200), (1800, 1350), (2400, 1800), (4032, 3024)]  # scaled 1/2, 1/2, 1/2, 1/4
    files = [_upscaled(p, tmp_path / f"{i}.jpg", s, i) for i, (p, s) in enumerate(zip(photos, sizes))]
    scaled = np.stack([decode_image(tf.io.read_file(str(f)), SIZE).numpy() for f in files])
    full = np.stack([full_decode(f) for f in files])
    assert np.abs(scaled - full).max() > 1  # scaling did happen: the pixels are not bit-identical

    from clf.train.features import make_extractor
    from clf.infer.forward import predict
    from clf.train.model import Classifier, build_backbone

    backbone = clf.get_host().backbones.get("mobilenet_v2_035")
    base = build_backbone(backbone, tuple(SIZE), str(MOBILENET_V2_035))
    extractor = make_extractor(Classifier(None, base, None, backbone.preprocess), SIZE)
    a, b = predict(extractor, scaled), predict(extractor, full)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.999, cosine


def test_headers_tell_which_datasets_need_the_scaling_branch(tmp_path):
    from PIL.JpegImagePlugin import JpegImageFile  # the header reader may_scale uses

    from clf.data.images import files_dataset, may_scale

    def _jpeg_shape(path):
        with open(path, "rb") as f:
            try:
                return JpegImageFile(f).size[::-1]
            except SyntaxError:  # not a JPEG
                return None

    photos = sorted((require_shared(DATASETS / "hymenoptera") / "val" / "bees").glob("*.jpg"))[:3]
    progressive = tmp_path / "progressive.jpg"  # another frame marker (SOF2), EXIF before it
    exif = Image.Exif()
    exif[0x010E] = "x" * 5000
    Image.open(photos[0]).save(progressive, progressive=True, exif=exif)
    for f in [*photos, progressive]:
        want = tuple(int(v) for v in tf.io.extract_jpeg_shape(tf.io.read_file(str(f)))[:2])
        assert _jpeg_shape(f) == want
    big = _upscaled(photos[0], tmp_path / "big.jpg", (1600, 1200), 0)
    png = _upscaled(photos[0], tmp_path / "big.png", (1600, 1200), 0, fmt="PNG")
    assert _jpeg_shape(png) is None
    assert not may_scale([str(p) for p in photos] + [str(png)], SIZE)  # no branch: plain full decode
    assert may_scale([str(photos[0]), str(big)], SIZE)
    assert not may_scale([str(big)], ImageSize((448, 448), 0.875))  # 1/2 would leave 525 < 2 x 448
    # A mixed folder: each file decodes as on its own, scaled or not.
    files = [str(photos[0]), str(big), str(png)]
    got = [x.numpy() for x, _ in files_dataset(files, [0, 1, 2], SIZE)]
    for f, image in zip(files, got):
        np.testing.assert_array_equal(image, decode_image(tf.io.read_file(f), SIZE).numpy())
