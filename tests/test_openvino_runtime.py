"""OpenVINO as a runtime (issue 29): ``OpenVINORunner`` runs TFLite and ONNX models in float32 with
TensorFlow's answers, is a checked ``--runtime auto`` candidate for the frozen backbone, and
``--runtime openvino`` predicts with a run folder's .tflite/.onnx."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'clf[openvino]')")

import clf  # noqa: E402
from clf.errors import ModelError  # noqa: E402
from clf.infer.choice import TOLERANCE, BackboneRuntime, relative_difference  # noqa: E402
from clf.infer.runners import OpenVINORunner, TensorFlowRunner  # noqa: E402
from clf.infer.store import RuntimeStore  # noqa: E402
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder  # noqa: E402


@pytest.fixture(scope="module")
def extractor():
    import keras

    from clf.host.manager import get_host

    backbone = get_host().backbones.get(SMALL_BACKBONE).build((SMALL_SIZE, SMALL_SIZE, 3), None)
    inputs = keras.Input((SMALL_SIZE, SMALL_SIZE, 3))
    return keras.Model(inputs, backbone(inputs / 127.5 - 1.0))


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).uniform(0, 255, (4, SMALL_SIZE, SMALL_SIZE, 3)).astype(np.float32)


def test_float32_answers_from_tflite_bytes(extractor, batch):
    runner = OpenVINORunner(clf.to_tflite(extractor))
    reference = TensorFlowRunner(extractor).run(batch)
    assert relative_difference(reference, runner.run(batch)) <= TOLERANCE  # bf16 would be far off
    assert runner.output_width() == reference.shape[-1]


def test_auto_checks_openvino_beside_tflite(extractor, batch, tmp_path):
    store = RuntimeStore(tmp_path, {"test": "openvino"})
    backbone = BackboneRuntime("auto", extractor, store)
    features = backbone.run(batch)
    checks = store.read_checks()
    assert {"tflite", "openvino"} <= set(checks["checks"]) and "onnx" not in checks["checks"]
    assert all(c["passed"] for c in checks["checks"].values())
    assert backbone.name in ("tensorflow", "tflite", "openvino") and checks["auto"]["runtime"] == backbone.name
    assert relative_difference(TensorFlowRunner(extractor).run(batch), features) <= TOLERANCE
    again = BackboneRuntime("auto", extractor, store)
    assert again.reused and again.name == backbone.name  # the stored decision, no new check


def test_requested_openvino_runs_the_backbone(extractor, batch, tmp_path):
    backbone = BackboneRuntime("openvino", extractor, RuntimeStore(tmp_path, {"test": "requested"}))
    backbone.run(batch)
    assert backbone.name == "openvino" and backbone.check["passed"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino")
    data = make_folder(root / "data", per_class=4)
    result = clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=1, batch_size=4,
                                   image_size=SMALL_SIZE, output=str(root / "run"), augment=False, cache=False,
                                   export=("h5", "tflite")))
    return result.run_dir, data


def test_predict_with_the_runs_tflite_in_openvino(run):
    run_dir, data = run
    files = clf.collect_images(data)
    predictor = clf.load_predictor(run_dir, runtime="openvino")
    assert predictor.runtime == "openvino" and predictor.path.name == "model.tflite"
    litert = clf.load_predictor(run_dir, fmt="tflite")
    got = np.array([p.probabilities for p in clf.predict_files(predictor, files)])
    want = np.array([p.probabilities for p in clf.predict_files(litert, files)])
    assert np.abs(got - want).max() <= 1e-4


def test_openvino_refuses_a_keras_artifact(run, tmp_path):
    run_dir, _ = run
    with pytest.raises(ModelError, match="runs .onnx or .tflite artifacts"):
        clf.load_predictor(run_dir / "model.h5", runtime="openvino")
    labels = json.loads((run_dir / "labels.json").read_text())
    assert labels["verification"]["results"]["tflite"]["passed"]
