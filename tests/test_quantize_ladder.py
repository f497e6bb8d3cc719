"""The quantization ladder (clf.artifacts.quantize): each variant forced in turn
(CLF_QUANTIZE_FROM) on a tiny real model, what is recorded for the one kept, and the clear
failure when none passes (the artifact set aside, nothing shipped)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import clf
from clf.artifacts import verify
from clf.artifacts.quantize import LADDERS, START_ENV, VARIANT_INPUT, ladder
from clf.errors import ConfigError, VerificationError
from clf.infer.runners import LiteRTRunner
from conftest import SMALL_BACKBONE, SMALL_SIZE, SMALL_WEIGHTS, make_folder, require_shared


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A tiny h5 run on the real small weights (LiteRT aborts the whole process on the int8
    graph of a random-weight backbone: degenerate activation ranges), without a known score
    (tests/test_unknown.py covers int8 with one)."""
    weights = require_shared(SMALL_WEIGHTS)
    root = tmp_path_factory.mktemp("ladder")
    data = make_folder(root / "data", per_class=8)
    return clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights=str(weights), batch_size=8,
                                 image_size=SMALL_SIZE, output=str(root / "run"), augment=False,
                                 unknown="off")).run_dir


def _export(plain_run, tmp_path, monkeypatch, variant, mode="int8", bar=0.0):
    """clf export of tflite at ``mode`` with the ladder started at ``variant`` and the agreement bar at ``bar``."""
    monkeypatch.setenv(START_ENV, variant)
    monkeypatch.setattr(verify, "MIN_QUANTIZED_AGREEMENT", bar)
    run_dir = Path(shutil.copytree(plain_run, tmp_path / "run"))
    observer = clf.RecordingObserver()
    added = clf.export(run_dir, "tflite", quantize=mode, observer=observer)
    return run_dir, added, observer


# The later steps build more (16x8 calibrates again, resolved-head extracts features): slow.
@pytest.mark.parametrize("variant", [v if v in ("full", "float-head") else pytest.param(v, marks=pytest.mark.slow)
                                     for v in LADDERS["int8"]])
def test_each_int8_variant_is_built_verified_and_recorded(plain_run, tmp_path, monkeypatch, variant):
    run_dir, added, observer = _export(plain_run, tmp_path, monkeypatch, variant)
    labels = json.loads((run_dir / "labels.json").read_text())
    record = labels["quantization_variant"]["tflite"]
    assert record["mode"] == "int8" and record["variant"] == variant and record["passed"]
    assert [a["variant"] for a in record["tried"]] == [variant] and record["tried"][0]["top1_agreement"] >= 0
    assert json.loads((run_dir / "manifest.json").read_text())["quantization_variant"]["tflite"] == record
    assert labels["quantization"] == {"tflite": "int8"} and labels["verification"]["results"]["tflite"]["passed"]
    # The input type labels.json promises is the file's own.
    runner = LiteRTRunner(run_dir / "model_int8.tflite")
    assert labels["inputs"]["tflite"]["dtype"] == VARIANT_INPUT[variant]
    assert runner.integer_input == (VARIANT_INPUT[variant] == "uint8")
    assert runner.run(np.zeros((2, *labels["input_size"], 3), np.float32)).shape[0] == 2
    assert any(f"kept variant {variant}" in note for note in observer.notes())


@pytest.mark.slow
def test_dynamic_resolved_head_keeps_float_input(plain_run, tmp_path, monkeypatch):
    run_dir, _, _ = _export(plain_run, tmp_path, monkeypatch, "resolved-head", mode="dynamic")
    labels = json.loads((run_dir / "labels.json").read_text())
    record = labels["quantization_variant"]["tflite"]
    assert record["variant"] == "resolved-head" and record["passed"], record
    # dynamic takes the photo (any size, float32) as before; the head inside is the new one
    assert labels["inputs"]["tflite"] == {**labels["inputs"]["tflite"], "kind": "photo", "dtype": "float32"}
    assert not LiteRTRunner(run_dir / "model_dynamic.tflite").integer_input


def test_no_variant_passing_sets_the_artifact_aside_and_says_what_was_tried(plain_run, tmp_path, monkeypatch):
    with pytest.raises(VerificationError) as caught:
        _export(plain_run, tmp_path, monkeypatch, "16x8", bar=1.01)  # no agreement reaches 101%
    text = str(caught.value)
    assert "no variant passed" in text and "16x8: top-1 agreement" in text and "resolved-head: top-1" in text
    run_dir = tmp_path / "run"
    assert (run_dir / "model_int8.tflite.failed").exists() and not (run_dir / "model_int8.tflite").exists()
    labels = json.loads((run_dir / "labels.json").read_text())
    assert "tflite" not in labels["artifacts"]


def test_the_ladder_runs_in_order_and_starts_where_asked(monkeypatch):
    monkeypatch.delenv(START_ENV, raising=False)
    assert ladder("int8") == ("full", "float-head", "selective", "16x8", "resolved-head")
    assert ladder("dynamic") == ("full", "resolved-head")
    monkeypatch.setenv(START_ENV, "16x8")
    assert ladder("int8") == ("16x8", "resolved-head")
    monkeypatch.setenv(START_ENV, "float-head")
    with pytest.raises(ConfigError, match="not a step of --quantize dynamic"):
        ladder("dynamic")
