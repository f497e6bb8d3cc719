"""The backbone's runtime (--runtime): the agreement check against TensorFlow and the
fallback when a runtime disagrees or is missing, the stored decision, the feature cache key,
the run record, and prediction giving the same classes in every runtime."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.data.images import ImageSize
from clf.train.extraction import feature_cache_for, keep_tensorflow
from clf.train.features import make_extractor
from clf.train.model import Classifier, build_backbone
from clf.infer.choice import TOLERANCE, BackboneRuntime, relative_difference
from clf.infer.runners import LiteRTRunner, RuntimeUnavailable, TensorFlowRunner
from clf.infer.store import RuntimeStore, converted
from conftest import SMALL_BACKBONE, SMALL_SIZE


@pytest.fixture(scope="module")
def extractor():
    """A small random-weight feature extractor: raw RGB 0-255 -> pooled features."""
    import keras

    keras.utils.set_random_seed(0)
    backbone = clf.get_host().backbones.get(SMALL_BACKBONE)
    base = build_backbone(backbone, (SMALL_SIZE, SMALL_SIZE), None)
    return make_extractor(Classifier(None, base, None, backbone.preprocess), ImageSize((SMALL_SIZE, SMALL_SIZE)))


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).uniform(0, 255, (6, SMALL_SIZE, SMALL_SIZE, 3)).astype(np.float32)


class Shifted(TensorFlowRunner):
    """TensorFlow's features moved by ``shift`` times their largest magnitude: a runtime that
    disagrees (or, with a tiny shift, one that agrees within the tolerance)."""

    name = "tflite"

    def __init__(self, model, shift):
        super().__init__(model)
        self.shift = shift

    def run(self, batch):
        features = super().run(batch)
        return features + self.shift * np.abs(features).max()


def shifted_opener(shift, calls):
    def open_(model, store):
        calls.append(1)
        converted("tflite", model, store, lambda m: b"a converted extractor")  # stored like a real one
        return Shifted(model, shift)
    return open_


def test_relative_difference():
    assert relative_difference(np.array([[2.0, -4.0]]), np.array([[2.0, -4.0004]])) == pytest.approx(1e-4)
    assert relative_difference(np.ones((2, 3)), np.ones((3, 2))) == float("inf")
    assert relative_difference(np.ones((1, 2)), np.array([[1.0, np.nan]])) == float("inf")


def test_a_disagreeing_runtime_falls_back_to_tensorflow_with_a_note(extractor, batch, tmp_path):
    calls = []
    store = RuntimeStore(tmp_path, {"backbone": "x"})
    runtime = BackboneRuntime("auto", extractor, store, openers={"tflite": shifted_opener(1e-2, calls)})
    got = runtime.run(batch)
    assert runtime.name == "tensorflow"
    np.testing.assert_array_equal(got, TensorFlowRunner(extractor).run(batch))  # TensorFlow's own
    (note,) = runtime.notes
    assert "differ from TensorFlow's by 1.00e-02" in note and "at most 0.0001" in note
    assert runtime.record()["check"]["passed"] is False
    # The failed check is stored with the converted file: the next run does not check again.
    again = BackboneRuntime("auto", extractor, store, openers={"tflite": shifted_opener(1e-2, calls)})
    assert again.name == "tensorflow" and again.reused and calls == [1]
    assert again.notes == runtime.notes


def test_an_agreeing_runtime_is_kept_when_faster_and_its_check_is_reused(extractor, batch, tmp_path):
    calls = []
    store = RuntimeStore(tmp_path, {"backbone": "x"})
    runtime = BackboneRuntime("tflite", extractor, store, openers={"tflite": shifted_opener(TOLERANCE / 10, calls)})
    runtime.run(batch)
    record = runtime.record()
    assert runtime.name == "tflite" and not runtime.notes  # asked for explicitly: kept whatever its speed
    assert record["check"]["passed"] and record["check"]["relative_max_diff"] == pytest.approx(TOLERANCE / 10, rel=0.01)
    assert set(record["check"]["images_per_second"]) == {"tensorflow", "tflite"}
    again = BackboneRuntime("tflite", extractor, store, openers={"tflite": shifted_opener(TOLERANCE / 10, calls)})
    assert again.name == "tflite" and again.reused  # decided before any batch, from the stored check
    again.run(batch)
    assert len(calls) == 2  # opened to run, but not checked against TensorFlow again
    # auto times both and keeps the faster one
    auto = BackboneRuntime("auto", extractor, None, openers={"tflite": shifted_opener(TOLERANCE / 10, [])})
    auto.decide(batch)
    speed = auto.record()["check"]["images_per_second"]
    assert auto.name == ("tflite" if speed["tflite"] > speed["tensorflow"] else "tensorflow")


def test_a_missing_runtime_falls_back_with_a_note_that_says_how_to_install_it(extractor, batch):
    def missing(model, store):
        raise RuntimeUnavailable("LiteRT is not installed (pip install 'clf[tflite]')")

    for requested in ("auto", "tflite"):
        runtime = BackboneRuntime(requested, extractor, None, openers={"tflite": missing, "onnx": missing})
        runtime.run(batch)
        assert runtime.name == "tensorflow"
        assert "LiteRT is not installed (pip install 'clf[tflite]')" in runtime.notes[0]


def test_several_replicas_mixed_precision_and_accelerators_keep_tensorflow(extractor):
    dist = SimpleNamespace(replicas=2, name="mirrored", precision="float32", devices=["/gpu:0", "/gpu:1"])
    assert keep_tensorflow("auto", dist) == "2 replicas (strategy mirrored)"
    one_gpu = SimpleNamespace(replicas=1, name="default", precision="float32", devices=["/device:GPU:0"])
    assert keep_tensorflow("auto", one_gpu) == "an accelerator" and keep_tensorflow("tflite", one_gpu) is None
    assert keep_tensorflow("auto", SimpleNamespace(replicas=1, precision="mixed_float16", devices=[])) \
        == "precision mixed_float16"
    assert keep_tensorflow("auto", SimpleNamespace(replicas=1, precision="float32", devices=["/cpu:0"])) is None
    runtime = BackboneRuntime("tflite", extractor, None, keep_tensorflow="2 replicas (strategy mirrored)")
    assert runtime.name == "tensorflow" and "not used with 2 replicas" in runtime.notes[0]


def test_litert_reproduces_tensorflow(extractor, batch, tmp_path):
    from clf.infer.store import open_tflite

    store = RuntimeStore(tmp_path, {"backbone": "x"})
    runtime = open_tflite(extractor, store)
    assert isinstance(runtime, LiteRTRunner) and store.path("tflite").is_file()
    reference = TensorFlowRunner(extractor).run(batch)
    assert relative_difference(reference, runtime.run(batch)) <= TOLERANCE
    assert relative_difference(reference[:2], runtime.run(batch[:2])) <= TOLERANCE  # another batch size


def test_the_runtime_is_part_of_the_feature_cache_key():
    config = clf.RunConfig()
    parts = {"backbone": "b", "weights": "w", "image_size": [32, 32], "preprocess": "p"}
    size = ImageSize((32, 32), 0.875)
    keys = {feature_cache_for(config, parts, size, r).key for r in ("tensorflow", "tflite", "onnx")}
    assert len(keys) == 3


def test_auto_keeps_tensorflow_for_a_few_images_unless_a_conversion_is_stored(small_config):
    result = clf.run(small_config(runtime="auto"))  # 18 images
    record = result.manifest["runtime"]
    assert record["name"] == "tensorflow" and record["check"] is None
    assert record["reason"] == "18 images: converting pays from 200"


def test_run_records_the_runtime_and_caches_per_runtime(small_config, tmp_path, monkeypatch):
    monkeypatch.setattr("clf.train.extraction.AUTO_MIN_IMAGES", 1)  # convert even for these 18 images
    first = clf.run(small_config(runtime="auto"))
    record = first.manifest["runtime"]
    assert record["requested"] == "auto" and record["check"]["passed"]
    assert record["check"]["relative_max_diff"] <= TOLERANCE
    speed = record["check"]["images_per_second"]
    assert record["name"] == ("tflite" if speed["tflite"] > speed["tensorflow"] else "tensorflow")
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert manifest["runtime"] == record
    # The same runtime again: every feature from the cache, the stored check reused.
    again = clf.run(small_config(runtime="auto", output=str(tmp_path / "again")))
    assert again.manifest["runtime"]["reused_check"] and again.manifest["runtime"]["name"] == record["name"]
    assert all(c["extracted"] == 0 for c in again.extraction.values())
    # Another runtime has its own cache entries: extracted anew, never mixed with these.
    other = "tensorflow" if record["name"] == "tflite" else "tflite"
    third = clf.run(small_config(runtime=other, output=str(tmp_path / "third")))
    assert third.manifest["runtime"]["name"] == other
    assert all(c["cached"] == 0 for c in third.extraction.values())
    assert abs(third.metrics["validation_accuracy"] - first.metrics["validation_accuracy"]) <= 0.34  # 1 of 3 images


def test_config_rejects_an_unknown_runtime():
    assert clf.RunConfig(runtime="TFLite").runtime == "tflite"
    with pytest.raises(clf.ConfigError, match="runtime"):
        clf.RunConfig(runtime="tensorrt")


def test_predict_gives_the_same_classes_in_every_runtime(small_config, tmp_path):
    from clf.cli import app

    result = clf.run(small_config(runtime="tensorflow", epochs=3))
    files = sorted(str(p) for p in (tmp_path / "data").rglob("*.jpg"))
    reference = np.array([p.probabilities for p in clf.predict_files(clf.load_predictor(result.run_dir), files)])
    for runtime in ("tflite", "onnx", "auto"):
        predictor = clf.load_predictor(result.run_dir, runtime=runtime)
        got = np.array([p.probabilities for p in clf.predict_files(predictor, files)])
        assert (got.argmax(1) == reference.argmax(1)).all(), runtime
        np.testing.assert_allclose(got, reference, atol=1e-4)
        assert not predictor.notes
        assert predictor.runtime == ("keras" if runtime == "auto" else f"keras, backbone in {runtime}")
    # clf evaluate on the run: the same report in TensorFlow and LiteRT, which it names
    from clf.report.evaluation import evaluate_folder

    reports = {r: evaluate_folder(result.run_dir, tmp_path / "data", output=tmp_path / f"eval-{r}", runtime=r).report
               for r in ("tensorflow", "tflite")}
    assert reports["tflite"]["runtime"] == "keras, backbone in tflite" and reports["tensorflow"]["runtime"] == "keras"
    assert reports["tflite"]["accuracy"] == reports["tensorflow"]["accuracy"]
    # auto without a check stored by an auto run: the whole model in TensorFlow (asserted above);
    # the CLI with --runtime tflite reuses the stored check and gives the same class.
    res = CliRunner().invoke(app, ["predict", str(result.run_dir), files[0], "--format", "csv", "--runtime", "tflite"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1].split(",")[1] == ["ant", "bee", "cat"][int(reference[0].argmax())]


def test_runtime_flag_on_a_tflite_artifact_says_it_runs_in_its_own_runtime(small_config):
    result = clf.run(small_config(export=("tflite",), runtime="tensorflow", verify=True))
    predictor = clf.load_predictor(result.run_dir / "model.tflite", runtime="onnx")
    assert predictor.runtime == "litert" and "applies to Keras models" in predictor.notes[0]
