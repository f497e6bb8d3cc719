"""Every default exporter round-trips: written, reopened in its own runtime, verified on
held-out images against the in-memory model, and usable by ``clf predict``."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from clf.artifacts.verify import FLOAT_TOLERANCE, compare
from clf.infer.decode import Decoder
from conftest import SMALL_BACKBONE, SMALL_SIZE, SMALL_WEIGHTS, make_folder, make_image, require_shared

ALL = "h5,keras,savedmodel,tflite,onnx"
MAIN_FILE = {"h5": "model.h5", "keras": "model.keras", "savedmodel": "saved_model",
             "tflite": "model.tflite", "onnx": "model.onnx"}
runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """One small run exported in every format (trained once for the whole module)."""
    root = tmp_path_factory.mktemp("exporters")
    data = make_folder(root / "data", per_class=8)
    result = clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=1,
                                   batch_size=4, image_size=SMALL_SIZE, output=str(root / "run"),
                                   augment=False, export=ALL))
    return result, data


def _images(n=5, seed=3):
    return np.random.default_rng(seed).uniform(0, 255, (n, SMALL_SIZE, SMALL_SIZE, 3)).astype(np.float32)


def test_every_exporter_writes_its_artifact_and_labels_list_them(bundle):
    result, _ = bundle
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert list(labels["artifacts"]) == ALL.split(",")
    for name, main in MAIN_FILE.items():
        assert labels["artifacts"][name][0] == main and (result.run_dir / main).exists()
    assert labels["class_names"] == ["ant", "bee", "cat"]
    assert not [p for p in os.listdir(result.run_dir) if p.startswith(".tmp") or p.endswith(".failed")]


def test_export_verification_passed_and_is_recorded(bundle):
    result, _ = bundle
    labels = json.loads((result.run_dir / "labels.json").read_text())
    summary = labels["verification"]
    assert summary["passed"] and summary["file"] == "verification.json" and summary["source"] == "validation"
    assert set(summary["results"]) == set(ALL.split(","))
    full = json.loads((result.run_dir / "verification.json").read_text())
    assert full["images"] and all(os.path.isfile(f) for f in full["images"])
    for name, r in full["results"].items():
        assert r["passed"] and r["quantization"] == "none" and r["max_abs_diff"] <= FLOAT_TOLERANCE, name
    runtimes = {n: r["runtime"] for n, r in full["results"].items()}
    assert runtimes["keras"] == "keras" and runtimes["savedmodel"] == "tf.saved_model"
    assert runtimes["onnx"] == "onnxruntime" and runtimes["tflite"] == "litert"  # never the deprecated tf.lite
    assert result.verification is not None and not result.verification.failed


@pytest.mark.parametrize("name", list(MAIN_FILE))
def test_each_artifact_reopens_in_its_runtime_and_matches_the_model(bundle, name):
    result, _ = bundle
    predictor = clf.load_predictor(result.run_dir / MAIN_FILE[name])
    x = _images()
    got = predictor.predict_batch(x)
    np.testing.assert_allclose(got, result.outputs(x), atol=FLOAT_TOLERANCE)  # probabilities, known score
    assert predictor.class_names == ["ant", "bee", "cat"]
    # a batch of another size right after (TFLite resizes its input tensor)
    assert predictor.predict_batch(x[:2]).shape == (2, 4)


@pytest.mark.parametrize("name", list(MAIN_FILE))
def test_cli_predict_on_each_format(bundle, name):
    result, data = bundle
    res = runner.invoke(app, ["predict", str(result.run_dir / MAIN_FILE[name]), str(data), "--format", "json",
                              "--top-k", "2"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 24 and all(r["error"] is None and len(r["top"]) == 2 for r in rows)
    assert {t["class"] for r in rows for t in r["top"]} <= {"ant", "bee", "cat"}


def test_tflite_embeds_the_label_record(bundle):
    from clf.plugins.tflite_exporter import read_embedded_labels

    result, _ = bundle
    embedded = read_embedded_labels(result.run_dir / "model.tflite")
    assert embedded["class_names"] == ["ant", "bee", "cat"] and embedded["quantization"] == "none"
    assert embedded["input_size"] == [SMALL_SIZE, SMALL_SIZE]


def test_onnx_carries_class_names_in_its_metadata(bundle):
    import onnx

    result, _ = bundle
    props = {p.key: p.value for p in onnx.load(str(result.run_dir / "model.onnx")).metadata_props}
    assert json.loads(props["clf_labels"])["class_names"] == ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A run on real ImageNet features, exported as int8 TFLite and verified by the engine.

    Quantization is judged by top-1 agreement, which only means something when outputs
    differ from image to image: with random weights (``weights none``) MobileNet's
    features are tiny and every image gets nearly the same probabilities, so one int8 step
    flips the argmax. Hence the real weights here (skipped where absent).

    Trained as before the solved head (Keras fit, constant rate, last epoch): on these
    generated images several outputs sit near a tie between two classes, and whether a
    quantization step flips more than one of the 30 depends on such training details
    (the solved head and the cosine schedule each left 2-4 flips here: 93% agreement).
    """
    weights = require_shared(SMALL_WEIGHTS)
    root = tmp_path_factory.mktemp("real")
    # 30 held-out images, so one flipped near-tie is not already below 95%
    data = make_folder(root / "data", per_class=20)
    result = clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights=str(weights), epochs=5,
                                   lr=1e-2, batch_size=16, image_size=SMALL_SIZE, validation_split=0.5,
                                   output=str(root / "run"), augment=False, export="keras,tflite",
                                   quantize="int8", solver="keras", schedule="constant", last_epoch=True,
                                   unknown="off"))  # int8 with a known score: tests/test_unknown.py
    return result, data


def test_run_with_quantize_int8_names_and_verifies_it(real_run):
    result, _ = real_run
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert labels["artifacts"]["tflite"] == ["model_int8.tflite"] and labels["quantization"] == {"tflite": "int8"}
    r = labels["verification"]["results"]["tflite"]
    assert r["passed"] and r["quantization"] == "int8" and r["top1_agreement"] >= 0.95
    assert labels["verification"]["images"] == 30
    # Integer pixels at the input size in (no in-model resize); the Keras model takes the photo.
    assert labels["inputs"]["tflite"]["kind"] == "fixed" and labels["inputs"]["tflite"]["dtype"] == "uint8"
    assert labels["inputs"]["tflite"]["shape"] == [None, SMALL_SIZE, SMALL_SIZE, 3]
    assert labels["inputs"]["keras"]["kind"] == "photo" and r["client_images"] == 0


@pytest.mark.parametrize("mode", ["float16", "dynamic", "int8"])
def test_quantized_tflite_round_trip(real_run, tmp_path, mode):
    from clf.plugins.tflite_exporter import TFLitePredictor, export_tflite

    result, data = real_run
    labels = json.loads((result.run_dir / "labels.json").read_text())
    x = Decoder((SMALL_SIZE, SMALL_SIZE)).batch(sorted(data.rglob("*.jpg")))
    ref = result.predict(x)
    assert ref.std(axis=0).max() > 1e-3  # outputs really vary with the image
    calls = []

    def representative():  # every class: the sorted files come class by class
        calls.append(1)
        for image in x[::3]:
            yield image[None]

    (path,) = export_tflite(result.model, tmp_path, labels, quantize=mode, representative_data=representative)
    assert path.name == f"model_{mode}.tflite"
    assert bool(calls) == (mode == "int8")  # only int8 calibrates
    predictor = TFLitePredictor(path, labels)
    assert predictor.quantization == mode
    got = predictor.predict_batch(x)
    assert got.shape == (60, 3) and np.all(np.isfinite(got))
    diff, agreement, passed = compare(ref, got, mode)
    assert passed and agreement >= 0.95, (diff, agreement)
    assert diff > 0  # quantized for real: not bit-identical to the float model
    if mode == "int8":
        assert predictor._runner.integer_input  # integer in: runs on integer-only hardware


def test_quantize_without_a_quantizing_exporter_is_a_usage_error(small_config, tmp_path):
    with pytest.raises(clf.ConfigError, match="--quantize int8 applies to exporters that quantize.*Add tflite"):
        clf.run(small_config(export="h5", quantize="int8"))
    with pytest.raises(clf.ConfigError, match="Invalid quantize 'int4'"):
        small_config(quantize="int4")
    assert not (tmp_path / "run").exists()


class _BrokenExporter:
    """A plugin whose 'keras' artifact does not reproduce the model: verification must
    catch it, rename it and leave the good artifacts usable."""

    @clf.hookimpl
    def register_exporters(self, register):
        from clf.artifacts.predict import KerasPredictor

        def export(model, directory, metadata):
            import keras

            clone = keras.models.clone_model(model)
            weights = model.get_weights()
            weights[-1] = weights[-1] + np.arange(len(weights[-1]))  # the softmax bias, skewed
            clone.set_weights(weights)
            path = directory / "broken.keras"
            clone.save(str(path))
            return [path]

        register("broken", export, load=KerasPredictor)


def test_failed_verification_is_an_error_and_the_artifact_is_renamed(small_config, host):
    host.register(_BrokenExporter(), name="broken-plugin")
    with pytest.raises(clf.VerificationError, match=r"broken \(broken.keras, keras.*renamed to \*\.failed"):
        clf.run(small_config(export="keras,broken", verify=True), host=host)
    run_dir = small_config().output
    names = set(os.listdir(run_dir))
    assert "broken.keras.failed" in names and "broken.keras" not in names and "model.keras" in names
    labels = json.loads(open(os.path.join(run_dir, "labels.json")).read())
    assert labels["artifacts"] == {"keras": ["model.keras"]}
    assert labels["verification"]["passed"] is False
    assert labels["verification"]["results"]["broken"]["passed"] is False
    assert clf.load_predictor(run_dir).path.name == "model.keras"  # the good one still predicts
    with pytest.raises(clf.ModelError, match="renamed after failing its round-trip check"):
        clf.load_predictor(os.path.join(run_dir, "broken.keras.failed"))


def test_clf_verify_command_rechecks_an_artifact(bundle, tmp_path):
    result, data = bundle
    res = runner.invoke(app, ["verify", str(result.run_dir / "model.onnx")])
    assert res.exit_code == 0, res.output
    assert "ok onnx (model.onnx, onnxruntime" in res.output
    res = runner.invoke(app, ["verify", str(result.run_dir / "model.tflite"), "--data", str(data / "bee")])
    assert res.exit_code == 0 and "on 8 images" in res.output, res.output
    # a bundle without a Keras model needs --reference
    only = tmp_path / "only"
    only.mkdir()
    (only / "model.onnx").write_bytes((result.run_dir / "model.onnx").read_bytes())
    labels = json.loads((result.run_dir / "labels.json").read_text())
    labels["artifacts"] = {"onnx": ["model.onnx"]}
    (only / "labels.json").write_text(json.dumps(labels))
    res = runner.invoke(app, ["verify", str(only / "model.onnx"), "--data", str(data)])
    assert res.exit_code == 1 and "Pass --reference" in res.output
    res = runner.invoke(app, ["verify", str(only / "model.onnx"), "--data", str(data),
                              "--reference", str(result.run_dir / "model.keras")])
    assert res.exit_code == 0, res.output


def test_clf_verify_fails_on_a_mismatching_artifact(bundle, tmp_path):
    import keras

    result, data = bundle
    other = tmp_path / "other"
    other.mkdir()
    model = keras.models.clone_model(result.model)
    weights = result.model.get_weights()
    weights[-1] = weights[-1] + np.arange(len(weights[-1]))  # the softmax bias, skewed
    model.set_weights(weights)
    model.save(str(other / "model.keras"))
    labels = json.loads((result.run_dir / "labels.json").read_text())
    (other / "labels.json").write_text(json.dumps({**labels, "artifacts": {"keras": ["model.keras"]}}))
    res = runner.invoke(app, ["verify", str(result.run_dir / "model.onnx"), "--data", str(data / "ant"),
                              "--reference", str(other / "model.keras")])
    assert res.exit_code == 1 and "changed since it was exported" in res.output  # saved by hand, not by clf
    res = runner.invoke(app, ["verify", str(result.run_dir / "model.onnx"), "--data", str(data / "ant"),
                              "--reference", str(other / "model.keras"), "--trust-artifact"])
    assert res.exit_code == 1 and "FAILED onnx" in res.output, res.output


def test_predict_formats_output_file_and_unreadable_files(bundle, tmp_path):
    result, data = bundle
    imgs = tmp_path / "imgs" / "nested"
    make_image(imgs / "good.jpg", 1, np.random.default_rng(0))
    (imgs / "broken.jpg").write_bytes(b"not a jpeg")
    out_csv = tmp_path / "pred.csv"
    res = runner.invoke(app, ["predict", str(result.run_dir / "model.tflite"), str(tmp_path / "imgs"),
                              "--top-k", "2", "--output", str(out_csv)])
    assert res.exit_code == 1  # one file unreadable: reported, the other still predicted
    assert "broken.jpg: not a decodable image" in res.output and "1 file(s) could not be read" in res.output
    import csv

    lines = list(csv.reader(out_csv.read_text().splitlines()))
    assert lines[0] == ["path", "class_1", "probability_1", "class_2", "probability_2", "error", "known_score",
                        "unknown"]
    rows = {line[0].rsplit("/", 1)[-1]: line for line in lines[1:]}
    assert rows["good.jpg"][1] in ("ant", "bee", "cat") and rows["good.jpg"][5] == ""
    assert 0 <= float(rows["good.jpg"][6]) <= 1 and rows["good.jpg"][7] in ("true", "false")
    assert rows["broken.jpg"][1] == "" and "decodable" in rows["broken.jpg"][5]
    table = runner.invoke(app, ["predict", str(result.run_dir / "saved_model"), str(data / "ant"), "--format", "table"])
    assert table.exit_code == 0 and "8 images (saved_model, tf.saved_model)" in table.output, table.output
    out_json = tmp_path / "p.json"
    assert runner.invoke(app, ["predict", str(result.run_dir), str(data / "ant"), "-o", str(out_json)]).exit_code == 0
    assert len(json.loads(out_json.read_text())) == 8  # format from the suffix
    bad = runner.invoke(app, ["predict", str(result.run_dir), str(data), "--format", "xml"])
    assert bad.exit_code == 2 and "Unknown --format 'xml'" in bad.output


def test_float_check_uses_a_few_images_and_the_known_reference(bundle, tmp_path):
    """Float artifacts are compared on FLOAT_CHECK_IMAGES images; reference probabilities the
    caller already has (the engine's cached-feature outputs) are used, not recomputed."""
    import shutil

    from clf.artifacts.verify import FLOAT_CHECK_IMAGES, verify_exports
    from clf.infer.forward import batch_fn

    result, _ = bundle
    for name in ("model.h5", "labels.json"):
        shutil.copy(result.run_dir / name, tmp_path / name)
    labels = json.loads((tmp_path / "labels.json").read_text())
    exporters = {"h5": clf.get_host().exporters.get("h5")}
    images = _images(FLOAT_CHECK_IMAGES + 8)
    truth = result.model.predict(images, verbose=0)
    ok = verify_exports(batch_fn(result.model), labels, {"h5": [tmp_path / "model.h5"]}, exporters, images, [], "test",
                        reference_probs=truth)
    assert ok.results["h5"].passed and ok.results["h5"].images == FLOAT_CHECK_IMAGES
    wrong = verify_exports(batch_fn(result.model), labels, {"h5": [tmp_path / "model.h5"]}, exporters, images, [],
                           "test", reference_probs=truth[:, ::-1])
    assert not wrong.results["h5"].passed and (tmp_path / "model.h5.failed").exists()


def test_int8_calibration_images_cover_every_class(tmp_path, host):
    """Loaders list training files class by class; calibration must not see only the first."""
    from clf.artifacts.exporting import representative_data

    data = make_folder(tmp_path / "data", per_class=6)  # class k: bright band in channel k
    bundle = host.loaders.get("directory").load(str(data), image_size=(SMALL_SIZE, SMALL_SIZE), seed=0,
                                                 validation_split=0.2)

    def classes(images):
        return {int(np.asarray(im).reshape(-1, 3).mean(0).argmax()) for im in images}

    assert classes(x for x, _ in bundle.train.take(5)) == {0}  # what the first N would give
    picked = list(representative_data(bundle, limit=5)())
    assert len(picked) == 5 and picked[0].shape == (1, SMALL_SIZE, SMALL_SIZE, 3)
    assert classes(im[0] for im in picked) == {0, 1, 2}


def test_verification_images_cover_every_class(tmp_path, host):
    """Verification and the deployment table take held-out images spread over the split (listed
    class by class), each with its own row, so the reference's outputs line up."""
    from clf.artifacts.exporting import held_out

    data = make_folder(tmp_path / "data", per_class=6)
    bundle = host.loaders.get("directory").load(str(data), image_size=(SMALL_SIZE, SMALL_SIZE), seed=0,
                                                 validation_split=0.5)
    split = bundle.splits["validation"]
    ds, files, name, rows = held_out(bundle, limit=3)
    assert name == "validation" and len(files) == len(rows) == 3
    assert files == [split.files[i] for i in rows]
    assert {split.labels[i] for i in rows} == {0, 1, 2}  # the first 3 would be one class
    assert [int(y) for _, y in ds] == [split.labels[i] for i in rows]


def test_evaluate_counts_exact_duplicates_once(trained_run, tmp_path):
    import shutil

    from clf.report.evaluation import evaluate_folder

    data = tmp_path / "val"
    for cls in ("ant", "bee", "cat"):
        (data / cls).mkdir(parents=True)
        for f in sorted((trained_run.data / cls).glob("*.jpg"))[:2]:
            shutil.copy(f, data / cls)
    shutil.copy(data / "ant" / "ant_0.jpg", data / "ant" / "ant_0(1).jpg")  # the copy a run quarantines
    result = evaluate_folder(trained_run.run_dir, data, output=tmp_path / "eval")
    assert len(result.predictions) == 6 and result.report["duplicates_counted_once"] == 1
    (note,) = [n for n in result.notes if "duplicate" in n]
    assert note.startswith("1 exact duplicate file(s) counted once") and "ant_0(1).jpg (same bytes as" in note


def test_an_h5_file_proven_identical_to_the_model_is_not_rerun(bundle, tmp_path):
    """Verification proves model.h5 holds the in-memory model (config and every weight) instead
    of reloading and running it; the test vectors still come from the model's answer on the photos."""
    result, _ = bundle
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert labels["verification"]["results"]["h5"]["method"] == "identical"
    assert labels["verification"]["results"]["onnx"]["method"] == "run"  # other runtimes still run
    predictor = clf.load_predictor(result.run_dir / "model.h5")
    full = json.loads((result.run_dir / "verification.json").read_text())
    folder = {os.path.basename(f): f for f in full["images"]}
    for vector in labels["test_vectors"]:
        got = predictor.predict_batch(predictor.decoder.batch([folder[vector["file"]]]))[0]
        np.testing.assert_allclose(got[:3], vector["probabilities"], atol=2e-6)
        if "known_score" in vector:
            assert abs(got[3] - vector["known_score"]) <= 2e-6


def test_h5_holds_only_the_exact_model(bundle, tmp_path):
    import keras

    result, _ = bundle
    path = result.run_dir / "model.h5"
    model = keras.models.load_model(str(path), compile=False)
    assert clf.h5_holds(path, model)
    changed = model.weights[-1]
    changed.assign(changed.numpy() + 1e-6)
    assert not clf.h5_holds(path, model)
    (tmp_path / "bad.h5").write_bytes(path.read_bytes()[:4096])  # truncated: unreadable, so not proven
    assert not clf.h5_holds(tmp_path / "bad.h5", model)


def test_a_file_not_proven_identical_is_run_and_judged(bundle, tmp_path):
    """An h5 that does not hold the model it is said to come from falls back to the full round
    trip, which fails it (and sets it aside) as before."""
    import shutil

    import keras

    from clf.artifacts.verify import verify_exports
    from clf.infer.forward import batch_fn

    result, _ = bundle
    shutil.copy(result.run_dir / "model.h5", tmp_path / "model.h5")
    labels = json.loads((result.run_dir / "labels.json").read_text())
    other = keras.models.load_model(str(tmp_path / "model.h5"), compile=False)
    kernel = next(w for w in reversed(other.weights) if len(w.shape) == 2)  # the head's: changes every answer
    kernel.assign(np.random.default_rng(0).normal(0, 1, kernel.shape).astype(np.float32))
    exporters = {"h5": clf.get_host().exporters.get("h5")}
    images = _images(4)
    got = verify_exports(batch_fn(other), labels, {"h5": [tmp_path / "model.h5"]}, exporters, images, [], "test",
                         models={"h5": other})
    assert got.results["h5"].method == "run" and not got.results["h5"].passed
    assert (tmp_path / "model.h5.failed").exists()


def test_photo_features_are_cached_for_the_next_run(bundle, tmp_path):
    """The test vectors' full-decode features come from the cache in a warm run: no backbone runs,
    and the head on them gives the model's own answer."""
    from clf.train.feature_cache import FeatureCache
    from clf.train.features import make_extractor, photo_features

    result, data = bundle
    files = sorted(str(f) for f in (data / "ant").iterdir())[:2]
    crop = json.loads((result.run_dir / "labels.json").read_text())["resize"]["center_crop"]
    size = clf.ImageSize((SMALL_SIZE, SMALL_SIZE), crop)  # the run's own crop, as the engine passes it
    first = photo_features(make_extractor(result.classifier, size), files, size, FeatureCache(tmp_path, {"test": 1}))
    again = photo_features(None, files, size, FeatureCache(tmp_path, {"test": 1}))  # hits only: no extractor
    np.testing.assert_array_equal(first, again)
    head = result.classifier.outputs_head.predict(again, verbose=0)
    np.testing.assert_allclose(head, result.outputs(files), atol=1e-5)


def test_a_quantized_artifacts_client_path_is_held_to_its_own_answers(tmp_path):
    """The client check tests the client's path (Pillow decode, raw photo in): a quantized
    artifact is compared with its own answers on clf's decoding of the photos, not with the float
    model's, whose near-ties quantization may flip (the main check judges that on more images)."""
    from clf.artifacts.verify import Verification, check_client

    class ColourModel(clf.Predictor):  # a photo-taking artifact: softmax of the mean R, G, B
        runtime = "litert"

        def predict_batch(self, images):
            means = np.asarray(images, np.float64).reshape(len(images), -1, 3).mean(1) / 32.0
            e = np.exp(means - means.max(1, keepdims=True))
            return (e / e.sum(1, keepdims=True)).astype(np.float32)

    rng = np.random.default_rng(0)
    photos = []
    for i in range(4):
        make_image(tmp_path / f"p{i}.jpg", i % 3, rng, size=40)
        photos.append(str(tmp_path / f"p{i}.jpg"))
    labels = {"class_names": ["r", "g", "b"], "input_size": [SMALL_SIZE, SMALL_SIZE]}
    model = ColourModel(tmp_path / "m.tflite", labels)
    float_answers = model.predict_batch(model.decoder.batch(photos))[:, ::-1]  # a float model that disagrees
    for quantization, passes in (("float16", True), ("none", False)):
        result = Verification("tflite", "m.tflite", "litert", quantization, 4, 0.0, 1.0, "", True)
        check_client(result, model, photos, float_answers)
        assert result.passed is passes and result.client_images == 4, quantization
    floated = Verification("tflite", "m.tflite", "litert", "float16", 4, 0.0, 1.0, "", True)
    check_client(floated, model, photos, float_answers)
    assert "own answers" in floated.criterion
