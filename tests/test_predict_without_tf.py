"""Predicting without TensorFlow (issue 29): the Pillow + numpy decoder reproduces clf's TensorFlow
decode and resize, and ``clf predict`` on a run folder answers with its verified .tflite or .onnx in a
process that never imports TensorFlow, with the Keras model's answers; a missing, unverified or
damaged artifact falls back to TensorFlow with a note; clf serve answers the same way."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clf
from clf.artifacts.verify import FLOAT_TOLERANCE
from clf.data.images import ImageSize
from clf.infer.decode import Decoder
from clf.infer.pixels import Undecodable, center_box, fit_pixels, pillow_rgb
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder

PHOTO_SIZES = [(375, 500), (50, 70), (32, 32), (1000, 301), (97, 1203)]


@pytest.mark.parametrize("height,width", PHOTO_SIZES)
@pytest.mark.parametrize("size,crop", [((224, 224), 0.875), ((96, 128), 0.0), ((32, 32), 0.5)])
def test_numpy_resize_is_tensorflows(height, width, size, crop):
    import tensorflow as tf

    from clf.data.fitting import center_box as tf_center_box
    from clf.data.images import fit_image

    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3)).astype(np.uint8)
    fitted = ImageSize(size, crop)
    got, want = fit_pixels(image, fitted), fit_image(tf.constant(image), fitted).numpy()
    assert got.shape == want.shape == (*size, 3) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-3  # on 0-255
    assert center_box(height, width, size, crop) == tuple(int(v) for v in tf_center_box(height, width, size, crop))


@pytest.mark.parametrize("fmt,mode", [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGBA"), ("PNG", "P"), ("GIF", "P"),
                                      ("BMP", "RGB")])
def test_pillow_decodes_as_tensorflow(fmt, mode):
    import tensorflow as tf

    from clf.data.images import decode_pixels

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3)).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, quality=85) if fmt == "JPEG" else image.save(buf, format=fmt)
    data = buf.getvalue()
    assert np.array_equal(pillow_rgb(data), decode_pixels(tf.constant(data)).numpy())


def test_undecodable_bytes():
    with pytest.raises(Undecodable):
        pillow_rgb(b"not an image")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="WEBP")
    with pytest.raises(Undecodable, match="WEBP"):  # TensorFlow's decode_image does not read it either
        pillow_rgb(buf.getvalue())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A verified run with h5, tflite and onnx artifacts, and photos of several sizes."""
    root = tmp_path_factory.mktemp("notf")
    data = make_folder(root / "data", per_class=6)
    result = clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=1, batch_size=4,
                                   image_size=SMALL_SIZE, output=str(root / "run"), augment=False, cache=False,
                                   export=("h5", "tflite", "onnx")))
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for i, (h, w) in enumerate([(40, 40), (61, 90), (120, 80), (33, 47)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(photos / f"p{i}.jpg")
    return Path(result.run_dir), photos


def _predict_in_subprocess(run_dir: Path, photos: Path, *extra: str) -> tuple[dict, list[dict], str]:
    """``clf predict RUN PHOTOS --json`` in a fresh process: (what it imported, the records, stderr)."""
    code = ("import sys, json; from clf.cli import main\n"
            "sys.argv = ['clf', 'predict', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print(json.dumps({'tensorflow': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules}),"
            " file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, str(run_dir), str(photos), "--json", *extra],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stderr.strip().splitlines()[-1])
    return imported, json.loads(done.stdout), done.stderr


def _keras_probabilities(run_dir: Path, photos: Path) -> dict[str, list[float]]:
    predictor = clf.load_predictor(run_dir, fmt="h5", runtime="tensorflow")
    return {Path(p.path).name: p.probabilities for p in clf.predict_files(predictor, clf.collect_images(photos))}


def test_predict_answers_without_importing_tensorflow(run):
    run_dir, photos = run
    labels = json.loads((run_dir / "labels.json").read_text())
    assert labels["verification"]["results"]["tflite"]["passed"]
    imported, records, stderr = _predict_in_subprocess(run_dir, photos)
    assert imported == {"tensorflow": False, "keras": False}
    assert {r["artifact"] for r in records} == {"model.tflite, litert"}
    keras = _keras_probabilities(run_dir, photos)
    for r in records:
        top = r["top"][0]
        assert abs(keras[Path(r["path"]).name][labels["class_names"].index(top["class"])] - top["probability"]) \
            <= FLOAT_TOLERANCE


def test_the_decoders_agree_on_the_model_input(run):
    run_dir, photos = run
    predictor = clf.load_predictor(run_dir, fmt="auto", runtime="auto")
    assert predictor.runtime == "litert" and predictor.decoder.tensorflow is False
    files = clf.collect_images(photos)
    numpy_batch = np.concatenate([b for _, b in predictor.decoder.files(files)])
    tf_batch = np.concatenate([b for _, b in Decoder(predictor.decode_size).files(files)])
    assert np.abs(numpy_batch - tf_batch).max() < 1e-3


def _copy(run_dir: Path, dest: Path) -> Path:
    return Path(shutil.copytree(run_dir, dest))


def test_onnx_answers_when_the_tflite_is_damaged(run, tmp_path):
    run_dir = _copy(run[0], tmp_path / "run")
    with open(run_dir / "model.tflite", "ab") as f:
        f.write(b"\0")  # its sha256 no longer matches labels.json
    predictor = clf.load_predictor(run_dir, fmt="auto", runtime="auto")
    assert predictor.path.name == "model.onnx" and predictor.runtime == "onnxruntime"
    assert any("model.tflite could not answer" in n and "sha256" in n for n in predictor.notes)


@pytest.mark.parametrize("damage", ["missing", "unverified", "damaged"])
def test_tensorflow_answers_with_a_note_otherwise(run, tmp_path, damage):
    run_dir = _copy(run[0], tmp_path / "run")
    labels = json.loads((run_dir / "labels.json").read_text())
    for name in ("model.tflite", "model.onnx"):
        if damage == "missing":
            (run_dir / name).unlink()
        elif damage == "damaged":
            (run_dir / name).write_bytes(b"damaged")
    if damage == "unverified":
        for fmt in ("tflite", "onnx"):
            labels["verification"]["results"][fmt]["passed"] = False
        (run_dir / "labels.json").write_text(json.dumps(labels))
    predictor = clf.load_predictor(run_dir, fmt="auto", runtime="auto")
    assert predictor.path.name == "model.h5" and predictor.decoder.tensorflow
    why = {"missing": "the file is missing", "unverified": "failed export verification", "damaged": "sha256"}[damage]
    assert len(predictor.notes) >= 1 and "model.h5 answers (in TensorFlow)" in predictor.notes[0]
    assert why in predictor.notes[0]


def test_an_artifact_passed_by_name_answers(run):
    run_dir, _ = run
    assert clf.load_predictor(run_dir / "model.h5", fmt="auto", runtime="auto").path.name == "model.h5"
    assert clf.load_predictor(run_dir, runtime="auto").path.name == "model.h5"  # fmt None: the first listed
    assert clf.load_predictor(run_dir, fmt="auto", runtime="tensorflow").path.name == "model.h5"


SERVE = """
import json, sys
import clf
from clf.serve import ServeSettings, create_app, warm_up
from starlette.testclient import TestClient
predictor = clf.load_predictor(sys.argv[1], fmt="auto", runtime="auto")
settings = ServeSettings(allowed_hosts=("testserver",))
warm_up(predictor, settings)
with TestClient(create_app(predictor, settings)) as client:
    answer = client.post("/predict", files={"file": ("p.jpg", open(sys.argv[2], "rb").read(), "image/jpeg")})
print(json.dumps({"status": answer.status_code, "answer": answer.json(), "runtime": predictor.runtime,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def test_serve_answers_without_importing_tensorflow(run):
    pytest.importorskip("starlette", reason="clf serve needs the serve extra")
    pytest.importorskip("httpx", reason="the test client needs httpx")
    run_dir, photos = run
    photo = sorted(photos.glob("*.jpg"))[0]
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", SERVE, str(run_dir), str(photo)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["status"] == 200 and found["runtime"] == "litert" and not found["tensorflow"]
    want = _keras_probabilities(run_dir, photos)[photo.name]
    assert np.abs(np.array(found["answer"]["predictions"][0]["probabilities"]) - want).max() <= FLOAT_TOLERANCE
