"""Exported models take the decoded photo: a client that decodes with Pillow and passes raw
pixels (no resizing) into the TFLite artifact in LiteRT or the ONNX artifact in onnxruntime,
in a process without TensorFlow, gets ``clf predict``'s answer on real photos."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import clf
from clf.cli import app
from conftest import DATASETS, SMALL_BACKBONE, SMALL_SIZE, SMALL_WEIGHTS, require_shared

SIZE = 64  # the input size of the bundle below: photos shrink 5-8x and small ones grow
HYMENOPTERA, FLOWERS = DATASETS / "hymenoptera", DATASETS / "flowers5"

# What the client code in docs/export.md does, and nothing else: Pillow decodes, the raw pixels go in,
# the class names come from labels.json. Run in its own interpreter, which must never import
# TensorFlow or Keras.
CLIENT = r'''
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image

runtime, model, photos = sys.argv[1], sys.argv[2], sys.argv[3:]
class_names = json.loads((Path(model).parent / "labels.json").read_text())["class_names"]

def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), np.float32)[None]  # [1, h, w, 3], 0-255

if runtime == "litert":
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=model)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    def predict(x):
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])[0][:len(class_names)]  # then the known score, if any
else:
    import onnxruntime as ort
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    def predict(x):
        return session.run(None, {name: x})[0][0][:len(class_names)]

probs = [predict(pixels(p)).tolist() for p in photos]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "clf"))
print(json.dumps({"probabilities": probs, "top1": [class_names[int(np.argmax(p))] for p in probs],
                  "loaded": loaded}))
'''


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A run on 10 real photos per class (hymenoptera), real MobileNet weights, exported in
    every photo-taking format (trained once for the module)."""
    require_shared(HYMENOPTERA)
    require_shared(SMALL_WEIGHTS)
    root = tmp_path_factory.mktemp("portable")
    for split, n in (("train", 10), ("val", 4)):
        for cls in ("ants", "bees"):
            dest = root / "data" / split / cls
            dest.mkdir(parents=True)
            for f in sorted((HYMENOPTERA / split / cls).glob("*.jpg"))[:n]:
                shutil.copy(f, dest / f.name)
    result = clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(root / "data"), weights=str(SMALL_WEIGHTS),
                                   epochs=3, batch_size=8, image_size=SIZE, output=str(root / "run"),
                                   augment=False, export="keras,savedmodel,tflite,onnx"))
    return Path(result.run_dir), root / "data"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos of several sizes and aspect ratios: hymenoptera (500 px wide, landscape
    and portrait), flowers5 (128x128, smaller than nothing but still 2x the input), and
    variants cut from them: a tall strip, a small one (below the input size: upsampled), an
    exact input-size one, a large upscaled one and a PNG."""
    require_shared(FLOWERS)
    out = tmp_path_factory.mktemp("photos")
    real = (sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:3] + sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:3]
            + sorted((FLOWERS / "val" / "rose").glob("*.jpg"))[:2])
    source = Image.open(real[0]).convert("RGB")
    variants = {
        "tall.jpg": source.crop((150, 0, 270, 375)),  # 120x375
        "small.jpg": source.resize((50, 37), Image.LANCZOS),
        "exact.jpg": source.resize((SIZE, SIZE), Image.LANCZOS),
        "large.jpg": Image.open(real[4]).convert("RGB").resize((1300, 975), Image.BICUBIC),
        "wide.png": Image.open(real[3]).convert("RGB").crop((0, 100, 500, 220)),  # 500x120
    }
    made = []
    for name, image in variants.items():
        image.save(out / name, quality=92) if name.endswith(".jpg") else image.save(out / name)
        made.append(out / name)
    return real + made


def _clf_predict(model: Path, files) -> dict[str, list[float]]:
    """``clf predict --json`` with every class's probability, by file name."""
    labels = json.loads((model.parent / "labels.json" if model.is_file() else model / "labels.json").read_text())
    res = CliRunner().invoke(app, ["predict", str(model), *map(str, files), "--json",
                                   "--top-k", str(len(labels["class_names"]))])
    assert res.exit_code == 0, res.output
    records = json.loads(res.output)
    assert len(records) == len(files) and all(r["error"] is None for r in records)
    return {Path(r["path"]).name: [{t["class"]: t["probability"] for t in r["top"]}[c] for c in labels["class_names"]]
            for r in records}


def _client(runtime: str, model: Path, files) -> dict:
    """The export guide's client in a fresh interpreter: probabilities and top-1 per photo."""
    proc = subprocess.run([sys.executable, "-c", CLIENT, runtime, str(model), *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("runtime,artifact", [("litert", "model.tflite"), ("onnxruntime", "model.onnx")])
def test_client_without_tensorflow_gets_clf_predicts_answer(bundle, photos, runtime, artifact):
    run_dir, _ = bundle
    model = run_dir / artifact
    expected = _clf_predict(run_dir / "model.keras", photos)
    got = _client(runtime, model, photos)
    assert got["loaded"] == []  # neither TensorFlow nor Keras nor clf in the client
    names = json.loads((run_dir / "labels.json").read_text())["class_names"]
    for f, probs, top1 in zip(photos, got["probabilities"], got["top1"]):
        want = np.asarray(expected[Path(f).name])
        assert top1 == names[int(np.argmax(want))], f.name
        np.testing.assert_allclose(probs, want, atol=1e-3, err_msg=f.name)
    # clf predict on the artifact itself says the same (the fixed-size path through it).
    again = _clf_predict(model, photos)
    for f in photos:
        np.testing.assert_allclose(again[Path(f).name], expected[Path(f).name], atol=1e-4)


def test_the_keras_photo_model_loads_in_plain_keras_after_importing_clf_preprocessing(bundle, photos):
    """What the export guide's table promises: ``import clf.preprocessing`` registers clf's
    layers (the crop-and-resize one too), then Keras alone opens model.keras and gives clf's
    answer on Pillow's pixels. (``import clf`` alone does not: its modules load lazily.)"""
    run_dir, _ = bundle
    script = ("import json, sys\nimport numpy as np\nimport keras\nimport clf.preprocessing\nfrom PIL import Image\n"
              "model = keras.models.load_model(sys.argv[1], compile=False)\n"
              "print(json.dumps([model.predict(np.asarray(Image.open(f).convert('RGB'), np.float32)[None],"
              " verbose=0)[0].tolist() for f in sys.argv[2:]]))")
    done = subprocess.run([sys.executable, "-c", script, str(run_dir / "model.keras"), *map(str, photos[:3])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = _clf_predict(run_dir / "model.keras", photos[:3])
    for f, outputs in zip(photos[:3], json.loads(done.stdout.strip().splitlines()[-1])):
        want = expected[Path(f).name]  # the class probabilities; the model then outputs the known score
        np.testing.assert_allclose(outputs[:len(want)], want, atol=1e-3, err_msg=f.name)


def test_labels_record_each_artifacts_input_and_test_vectors(bundle):
    run_dir, data = bundle
    labels = json.loads((run_dir / "labels.json").read_text())
    for name in ("keras", "savedmodel", "tflite", "onnx"):
        assert labels["inputs"][name]["kind"] == "photo"
        assert labels["inputs"][name]["shape"] == [None, None, None, 3]
    vectors = labels["test_vectors"]
    assert len(vectors) == 3
    files = {f.name: f for f in data.rglob("*.jpg")}
    paths = [files[v["file"]] for v in vectors]
    for v, f in zip(vectors, paths):
        assert v["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
        assert [v["height"], v["width"]] == list(np.asarray(Image.open(f)).shape[:2])
    # An integrator's check: their pipeline on those bytes gives the recorded numbers.
    got = _client("onnxruntime", run_dir / "model.onnx", paths)
    np.testing.assert_allclose(got["probabilities"], [v["probabilities"] for v in vectors], atol=1e-3)
    # Export verification ran the same client path on every photo artifact.
    for name in ("keras", "savedmodel", "tflite", "onnx"):
        result = labels["verification"]["results"][name]
        assert result["passed"] and result["client_images"] == 8 and result["client_max_abs_diff"] <= 1e-3


def test_tflite_uses_builtin_ops_only_and_takes_any_size(bundle):
    from tensorflow.lite.python import schema_py_generated as schema

    run_dir, _ = bundle
    model = schema.ModelT.InitFromPackedBuf(bytearray((run_dir / "model.tflite").read_bytes()), 0)
    assert all(code.customCode is None for code in model.operatorCodes)  # no Flex/custom op
    subgraph = model.subgraphs[0]
    assert list(subgraph.tensors[subgraph.inputs[0]].shapeSignature) == [-1, -1, -1, 3]


def test_savedmodel_takes_the_photo_and_keeps_a_fixed_signature(bundle, photos):
    import tensorflow as tf

    run_dir, _ = bundle
    loaded = tf.saved_model.load(str(run_dir / "saved_model"))
    photo, fixed = loaded.signatures["serving_default"], loaded.signatures["fixed"]
    assert photo.structured_input_signature[1]["image"].shape.as_list() == [None, None, None, 3]
    assert fixed.structured_input_signature[1]["image"].shape.as_list() == [None, SIZE, SIZE, 3]
    predictor = clf.load_predictor(run_dir / "model.keras")
    raw = np.asarray(Image.open(photos[0]).convert("RGB"), np.float32)[None]
    decoded = predictor.decode(Path(photos[0]).read_bytes())[None]  # clf's decode, crop, resize
    want = predictor.predict_batch(decoded)
    np.testing.assert_allclose(photo(image=tf.constant(raw))["output_0"].numpy(), want, atol=1e-5)
    np.testing.assert_allclose(fixed(image=tf.constant(decoded))["output_0"].numpy(), want, atol=1e-5)


def test_clf_verify_checks_the_pillow_client_path(bundle, tmp_path):
    from clf.artifacts.verify import verify_artifact

    run_dir, _ = bundle
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    report = verify_artifact(copy / "model.tflite")
    result = report.results["tflite"]
    assert result.passed and result.client_images == 8 and result.client_max_abs_diff <= 1e-3


def test_in_model_resize_is_clfs_resize_on_real_photos(photos):
    """The layer exported models start with equals clf predict's decode path (the full
    decode, the centre crop, tf.image.resize antialiased) on every photo, crop or none."""
    import tensorflow as tf

    from clf.data.fitting import fit_batch
    from clf.data.images import ImageSize, decode_image

    for f in photos:
        raw = np.asarray(Image.open(f).convert("RGB"))[None]
        for size in (ImageSize((SIZE, SIZE), 0.875), ImageSize((224, 160), 0.0), ImageSize((224, 224), 0.875)):
            want = decode_image(tf.io.read_file(str(f)), size, scale_jpeg=False).numpy()
            got = fit_batch(raw, size, size.center_crop).numpy()[0]
            assert np.abs(got - want).max() < 1e-3, (f.name, size)


def test_clf_decodes_the_pixels_pillow_decodes(photos):
    import tensorflow as tf

    from clf.data.images import decode_pixels

    for f in photos:
        np.testing.assert_array_equal(decode_pixels(tf.io.read_file(str(f))).numpy(),
                                      np.asarray(Image.open(f).convert("RGB")), err_msg=f.name)


def test_model_input_fixed_keeps_the_fixed_size_input(small_config):
    from tensorflow.lite.python import schema_py_generated as schema

    result = clf.run(small_config(export="tflite", model_input="fixed", verify=True))
    labels = json.loads((Path(result.run_dir) / "labels.json").read_text())
    assert labels["inputs"]["tflite"]["kind"] == "fixed"
    assert labels["inputs"]["tflite"]["shape"] == [None, SMALL_SIZE, SMALL_SIZE, 3]
    model = schema.ModelT.InitFromPackedBuf(bytearray((Path(result.run_dir) / "model.tflite").read_bytes()), 0)
    subgraph = model.subgraphs[0]
    assert list(subgraph.tensors[subgraph.inputs[0]].shapeSignature) == [-1, SMALL_SIZE, SMALL_SIZE, 3]
    assert "client_images" in labels["verification"]["results"]["tflite"]
    assert labels["verification"]["results"]["tflite"]["client_images"] == 0  # no client path: it needs resizing


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(inputs={"tflite": {"kind": "raw"}}), "inputs\\['tflite'\\] is"),
    (lambda d: d.update(inputs=["photo"]), "inputs is"),
    (lambda d: d.update(test_vectors=[{"sha256": "x", "probabilities": ["high"]}]), "test_vectors is"),
])
def test_a_damaged_inputs_or_test_vectors_record_is_refused(bundle, tmp_path, change, message):
    from clf.artifacts.labels import read_labels

    run_dir, _ = bundle
    labels = json.loads((run_dir / "labels.json").read_text())
    change(labels)
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(clf.ModelError, match=message):
        read_labels(tmp_path)


def test_model_input_is_checked():
    with pytest.raises(clf.ConfigError, match="model_input.*photo, fixed"):
        clf.RunConfig(model_input="raw")


def test_float16_tflite_takes_the_photo_too(bundle, photos, tmp_path):
    """Weight quantization keeps the float resize: the float16 file takes the raw photo and
    agrees with clf predict on the class (its probabilities move by float16 rounding)."""
    import keras

    from clf.artifacts.verify import client_probabilities
    from clf.plugins.tflite_exporter import TFLitePredictor, export_tflite

    run_dir, _ = bundle
    labels = json.loads((run_dir / "labels.json").read_text())
    model = keras.models.load_model(str(run_dir / "model.keras"), compile=False)
    assert clf.is_photo_model(model)
    (path,) = export_tflite(model, tmp_path, labels, quantize="float16")
    got = client_probabilities(TFLitePredictor(path, labels), photos)[:, :len(labels["class_names"])]
    expected = _clf_predict(run_dir / "model.keras", photos)
    want = np.array([expected[Path(f).name] for f in photos])
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    assert np.abs(got - want).max() < 0.05


def test_clf_export_adds_a_fixed_input_artifact_from_a_photo_model(bundle, tmp_path):
    """clf export starts from the run's model.keras (a photo model) and can write the
    fixed-size input; labels.json records each artifact's own input."""
    import keras

    run_dir, _ = bundle
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    clf.export(copy, "h5", model_input="fixed")
    labels = json.loads((copy / "labels.json").read_text())
    assert labels["inputs"]["h5"]["kind"] == "fixed" and labels["inputs"]["onnx"]["kind"] == "photo"
    assert labels["verification"]["results"]["h5"]["passed"]
    model = keras.models.load_model(str(copy / "model.h5"), compile=False)
    assert not clf.is_photo_model(model) and tuple(model.input_shape) == (None, SIZE, SIZE, 3)


def test_a_fresh_photo_model_exports_to_onnx_first(bundle, photos, tmp_path):
    """photo_model's model goes straight to ONNX (Keras exports only a model that ran; a run
    exporting keras,onnx calls no other converter before it)."""
    import keras
    import onnxruntime as ort

    from clf.plugins.onnx_exporter import export_onnx

    run_dir, _ = bundle
    labels = json.loads((run_dir / "labels.json").read_text())
    fixed = clf.fixed_model(keras.models.load_model(str(run_dir / "model.keras"), compile=False))
    (path,) = export_onnx(clf.photo_model(fixed, clf.ImageSize((SIZE, SIZE), 0.875)), tmp_path, labels)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    raw = np.asarray(Image.open(photos[0]).convert("RGB"), np.float32)[None]
    want = _clf_predict(run_dir / "model.keras", photos[:1])[Path(photos[0]).name]
    np.testing.assert_allclose(session.run(None, {"image": raw})[0][0][:len(want)], want, atol=1e-3)
