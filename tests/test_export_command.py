"""``clf export RUN_DIR --export ...``: a finished run gains verified artifacts; labels.json,
verification.json and manifest.json list them beside the ones it had."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE, SMALL_WEIGHTS, make_folder, require_shared

runner = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished h5-only run (trained once); each test exports from its own copy. Real
    ImageNet features where the shared weights are (quantized artifacts are judged by top-1
    agreement, meaningless on random weights' near-uniform outputs: see test_exporters)."""
    root = tmp_path_factory.mktemp("export-cmd")
    data = make_folder(root / "data", per_class=20)
    weights = str(SMALL_WEIGHTS) if SMALL_WEIGHTS.exists() else "none"
    clf.run(data=str(data), backbone=SMALL_BACKBONE, weights=weights, epochs=5, lr=1e-2, batch_size=16,
            image_size=SMALL_SIZE, validation_split=0.5, output=str(root / "run"), augment=False,
            solver="keras", schedule="constant", last_epoch=True,  # as tests/test_exporters' int8 run
            unknown="off")
    return root / "run", data


@pytest.fixture
def run_dir(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished[0], copy)
    return copy


def read(run_dir, name):
    return json.loads((run_dir / name).read_text())


def test_export_adds_verified_tflite_and_onnx_to_a_finished_run(run_dir, finished):
    before = read(run_dir, "labels.json")
    assert list(before["artifacts"]) == ["h5"]
    res = runner.invoke(app, ["export", str(run_dir), "--export", "tflite,onnx"])
    assert res.exit_code == 0, res.output
    assert "verified tflite" in res.output and "verified onnx" in res.output
    labels = read(run_dir, "labels.json")
    assert labels["artifacts"] == {**before["artifacts"], "tflite": ["model.tflite"], "onnx": ["model.onnx"]}
    assert set(labels["verification"]["results"]) == {"h5", "tflite", "onnx"} and labels["verification"]["passed"]
    assert set(read(run_dir, "verification.json")["results"]) == {"h5", "tflite", "onnx"}
    manifest = read(run_dir, "manifest.json")
    assert manifest["artifacts"] == labels["artifacts"]
    assert manifest["exports_added"][-1]["export"] == ["tflite", "onnx"]
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".tmp")]
    # The new artifacts predict what the run's own model predicts.
    files = clf.collect_images(finished[1] / "bee")
    h5 = [p.probabilities for p in clf.predict_files(clf.load_predictor(run_dir / "model.h5"), files)]
    for name in ("model.tflite", "model.onnx"):
        got = [p.probabilities for p in clf.predict_files(clf.load_predictor(run_dir / name), files)]
        np.testing.assert_allclose(got, h5, atol=1e-4)


def test_export_int8_from_python_calibrates_on_the_runs_training_images(run_dir, finished):
    require_shared(SMALL_WEIGHTS)
    added = clf.export(run_dir, "tflite", quantize="int8")
    assert [f.name for f in added.artifacts["tflite"]] == ["model_int8.tflite"]
    labels = read(run_dir, "labels.json")
    assert labels["quantization"] == {"tflite": "int8"} and labels["verification"]["passed"]
    result = added.verification.results["tflite"]
    assert result.quantization == "int8" and result.images == 30 and result.top1_agreement >= 0.95
    # The calibration images are the run's training split, as clf run --quantize int8 uses.
    from clf.artifacts.reexport import _bundle

    bundle = _bundle(run_dir, labels, None, need_train=True, need_held_out=True)
    recorded = read(run_dir, "manifest.json")["split"]["train"]
    assert len(bundle.splits["train"]) == sum(len(f) for f in recorded.values()) == 30
    assert all(f.startswith(str(finished[1])) for f in bundle.splits["train"].files)


def test_export_refuses_what_cannot_work_before_writing_anything(run_dir, tmp_path):
    before = sorted(p.name for p in run_dir.iterdir())
    for args, text in ((["--export", "h5"], "already has h5"),
                       (["--export", "tflit"], "Did you mean 'tflite'"),
                       (["--export", "onnx", "--quantize", "int8"], "--quantize int8 applies to"),
                       (["--export", "tflite", "--quantize", "int9"], "Did you mean 'int8'")):
        res = runner.invoke(app, ["export", str(run_dir), *args])
        assert res.exit_code == 2 and text in res.output, (args, res.output)
    res = runner.invoke(app, ["export", str(tmp_path / "nope"), "--export", "tflite"])
    assert res.exit_code == 2 and "does not exist" in res.output
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_export_finds_moved_data_with_data_or_skips_the_check(run_dir, finished, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(finished[1], moved)
    manifest = read(run_dir, "manifest.json")
    manifest["data"]["source"] = str(tmp_path / "gone")  # as if the data had moved
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    res = runner.invoke(app, ["export", str(run_dir), "--export", "keras"])
    assert res.exit_code == 1 and "--data" in res.output and "--no-verify" in res.output
    res = runner.invoke(app, ["export", str(run_dir), "--export", "keras", "--data", str(moved)])
    assert res.exit_code == 0 and "verified keras" in res.output, res.output
    res = runner.invoke(app, ["export", str(run_dir), "--export", "savedmodel", "--no-verify"])
    assert res.exit_code == 0 and "savedmodel" in read(run_dir, "labels.json")["artifacts"]


def test_a_bundle_without_a_keras_model_says_what_it_was_wanted_for(tmp_path):
    from clf.artifacts.verify import keras_model_in

    (tmp_path / "model.keras").write_bytes(b"x")
    (tmp_path / "model.h5").write_bytes(b"x")
    labels = {"artifacts": {"h5": ["model.h5"], "keras": ["model.keras"], "tflite": ["model.tflite"]}}
    assert keras_model_in(tmp_path, labels, "to export from") == tmp_path / "model.keras"  # native first
    del labels["artifacts"]["keras"]
    assert keras_model_in(tmp_path, labels, "to export from") == tmp_path / "model.h5"
    with pytest.raises(clf.ModelError, match=r"has no Keras model to export from; fix it$"):
        keras_model_in(tmp_path, {"artifacts": {"tflite": ["model.tflite"]}}, "to export from; fix it")


def test_export_reads_no_file_outside_the_data_folder_its_manifest_names(run_dir, finished):
    # An edited manifest.json listing /etc/passwd or a ../ path: refused with an error naming
    # the manifest, before anything is read or written.
    before = sorted(p.name for p in run_dir.iterdir())
    for outside in ("/etc/passwd", "../outside.jpg"):
        manifest = read(run_dir, "manifest.json")
        manifest["split"]["validation"]["ant"].append(outside)
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
        res = runner.invoke(app, ["export", str(run_dir), "--export", "keras"])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert "manifest.json" in res.output and repr(outside) in res.output and "not a file inside" in res.output
        assert "could not be read" not in res.output  # it was never opened
        manifest["split"]["validation"]["ant"].remove(outside)
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_export_explains_a_tampered_manifest_or_labels_record(run_dir):
    before = sorted(p.name for p in run_dir.iterdir())
    good = (run_dir / "manifest.json").read_text()
    for key, value in (("exports_added", {}), ("split", {"train": ["ant/ant_0.jpg"]})):
        manifest = json.loads(good)
        manifest[key] = value
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
        res = runner.invoke(app, ["export", str(run_dir), "--export", "keras", "--no-verify"])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert "is not a valid clf run record" in res.output and key in res.output
    (run_dir / "manifest.json").write_text(good)
    labels = read(run_dir, "labels.json")
    labels["input_size"] = [4, 4]
    (run_dir / "labels.json").write_text(json.dumps(labels))
    res = runner.invoke(app, ["export", str(run_dir), "--export", "keras"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "input_size [4, 4], but the model takes [32, 32]" in res.output
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing exported


def test_verify_reads_no_recorded_image_outside_the_data_folder(run_dir):
    record = read(run_dir, "verification.json")
    record["images"] = [*record["images"][:2], "/etc/passwd"]
    (run_dir / "verification.json").write_text(json.dumps(record))
    res = runner.invoke(app, ["verify", str(run_dir / "model.h5")])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "'/etc/passwd', which is not a file inside" in res.output and "--data" in res.output


def test_verify_of_a_bundle_moved_away_from_its_run_asks_for_data(run_dir, tmp_path):
    # Without manifest.json nothing says where the run's data was: the recorded images are not
    # read, and the error asks for --data instead of calling the record damaged.
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("model.h5", "labels.json", "verification.json"):
        shutil.copy(run_dir / name, bundle / name)
    res = runner.invoke(app, ["verify", str(bundle / "model.h5")])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "No images to verify" in res.output and "damaged" not in res.output
