"""The CLI through typer's CliRunner, and once as a real subprocess."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_image

runner = CliRunner()


def test_backbones_lists_every_backbone_as_table_and_json():
    table = runner.invoke(app, ["backbones"])
    assert table.exit_code == 0 and "vgg16" in table.output and "224x224" in table.output
    data = json.loads(runner.invoke(app, ["backbones", "--json"]).output)
    names = {row["name"] for row in data}
    assert len(data) >= 50 and {"vgg16", "mobilenet_v2_035", "efficientnet_b0"} <= names
    vgg = next(r for r in data if r["name"] == "vgg16")
    assert vgg["params"] == 14714688 and vgg["input_size"] == [224, 224] and vgg["preprocess"] == "vgg16"


def test_other_listings():
    assert "softmax" in runner.invoke(app, ["heads"]).output
    assert "directory" in runner.invoke(app, ["loaders"]).output
    assert "h5" in runner.invoke(app, ["exporters"]).output
    plugins = json.loads(runner.invoke(app, ["plugins", "--json"]).output)
    builtin = {p["name"]: p for p in plugins if p["builtin"]}
    assert builtin["clf.plugins.keras_applications"]["hooks"] == ["register_backbones"]
    assert "vgg16" in builtin["clf.plugins.keras_applications"]["components"]["backbones"]


def test_unknown_backbone_is_one_clear_line_and_exit_2(image_folder):
    res = runner.invoke(app, ["run", "--backbone", "vgg61", "--data", str(image_folder)])
    assert res.exit_code == 2
    assert "Unknown backbone 'vgg61'" in res.output and "Run 'clf backbones'" in res.output
    assert "Traceback" not in res.output


def test_bad_value_and_missing_data_both_exit_2(tmp_path):
    # The same kind of mistake, the same code (docs/reference/exit-codes.md).
    assert runner.invoke(app, ["run", "--epochs", "0"]).exit_code == 2
    res = runner.invoke(app, ["run", "--data", str(tmp_path / "nope"), "--weights", "none"])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_run_then_predict_with_saved_class_names(image_folder, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--backbone", SMALL_BACKBONE, "--classes", "3", "--data", str(image_folder),
                              "--epochs", "1", "--batch-size", "4", "--image-size", str(SMALL_SIZE),
                              "--weights", "none", "--output", str(out), "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "backbone weights: none" in res.output and "linear head solved" in res.output  # the default head
    pred = runner.invoke(app, ["predict", str(out / "model.h5"), str(image_folder / "bee"), "--json", "--top-k", "3"])
    assert pred.exit_code == 0, pred.output
    rows = json.loads(pred.output)
    assert len(rows) == 6
    assert {t["class"] for t in rows[0]["top"]} == {"ant", "bee", "cat"}
    assert abs(sum(t["probability"] for t in rows[0]["top"]) - 1) < 1e-4


def test_predict_reports_unreadable_files_and_goes_on(trained_run, tmp_path):
    out = trained_run.run_dir
    bad = tmp_path / "imgs"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg at all")
    (bad / "empty.png").write_bytes(b"")
    import numpy as np

    make_image(bad / "good.jpg", 0, np.random.default_rng(0))
    res = runner.invoke(app, ["predict", str(out), str(bad), "--json"])
    assert res.exit_code == 1
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(res.stdout)}
    assert rows["good.jpg"]["error"] is None and rows["good.jpg"]["top"]
    assert "0 bytes" in rows["empty.png"]["error"] and "decodable" in rows["broken.jpg"]["error"]


def test_real_subprocess_lists_backbones_and_misspelled_plugin_file_fails(tmp_path):
    done = subprocess.run([sys.executable, "-m", "clf.cli", "backbones", "--json"], capture_output=True, text=True)
    assert done.returncode == 0 and "vgg16" in done.stdout
    typo = tmp_path / "typo_plugin.py"
    typo.write_text("from clf import hookimpl\n\n@hookimpl\ndef register_head(register):\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "clf.cli", "heads", "--plugin", str(typo)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "unknown hook 'register_head'" in done.stderr and "Did you mean 'register_heads'" in done.stderr


def test_fast_transfer_options_are_validated_with_exit_2():
    for args in (["--fine-tune-layers", "top"], ["--class-weight", "inverse"], ["--augment-copies", "-1"],
                 ["--patience", "-2"], ["--fine-tune-lr", "3"]):
        res = runner.invoke(app, ["run", *args])
        assert res.exit_code == 2, (args, res.output)
        assert args[0].lstrip("-").replace("-", "_") in res.output


def test_run_reports_extraction_and_the_cache(image_folder, tmp_path):
    args = ["run", "--backbone", SMALL_BACKBONE, "--data", str(image_folder), "--epochs", "1", "--weights",
            "none", "--image-size", str(SMALL_SIZE), "--no-augment", "--cache-dir", str(tmp_path / "fc"),
            "--class-weight", "none", "--patience", "2", "--no-verify"]
    first = runner.invoke(app, [*args, "--output", str(tmp_path / "r1")])
    assert first.exit_code == 0, first.output
    assert "features: 18 images extracted, 0 from the cache" in first.output and str(tmp_path / "fc") in first.output
    second = runner.invoke(app, [*args, "--output", str(tmp_path / "r2")])
    assert "features: 0 images extracted, 18 from the cache" in second.output
    third = runner.invoke(app, [*args, "--output", str(tmp_path / "r3"), "--no-cache"])
    assert "18 images extracted" in third.output and "disk cache off" in third.output


PROBE = """
import sys
from typer.testing import CliRunner
from clf.cli import app
res = CliRunner().invoke(app, sys.argv[1:])
print(res.exit_code, "tensorflow" in sys.modules)
print(" ".join(res.output.split()))
"""


def _before_tensorflow(*args, cwd):
    """``(exit code, TensorFlow imported?, output)`` of a command in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)
    code, imported = done.stdout.splitlines()[0].split()
    return int(code), imported == "True", done.stdout.split("\n", 1)[1]


def test_path_mistakes_are_reported_before_tensorflow_is_imported(trained_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    for name in ("20260101-000000-a", "20260102-000000-b"):
        (runs / name).mkdir(parents=True)
        shutil.copy(trained_run.run_dir / "labels.json", runs / name)
    (runs / "notes").mkdir()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes((next(trained_run.data.glob("*/*.jpg"))).read_bytes())
    code, imported, said = _before_tensorflow("predict", "runs", "photo.jpg", cwd=tmp_path)
    assert (code, imported) == (2, False), said
    assert "'runs' is a folder of runs" in said and "'runs/20260102-000000-b', 'runs/20260101-000000-a'" in said
    assert "labels.json next to '.'" not in said
    cases = [(["predict", str(trained_run.run_dir), "nothere.jpg"], "'nothere.jpg' does not exist"),
             (["evaluate", str(trained_run.run_dir), "--data", "nothere"], "'nothere' does not exist"),
             (["run", "--data", "nothere"], "'nothere' does not exist"),
             (["run", "--data", str(trained_run.data), "--classes", "4"], "--classes 4 but")]
    for args, words in cases:
        code, imported, said = _before_tensorflow(*args, cwd=tmp_path)
        assert code in (1, 2) and not imported and words in said, (args, said)
