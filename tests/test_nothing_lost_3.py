"""Issue 26, "Nothing lost, round three": where clf writes and what a config file may ask.

Test names start with the issue's row number (r01 ...); the new user's first day rows are
named after what they check.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE, copy_run, make_folder, make_image

runner = CliRunner()
PART = "path,class_1,probability_1,error,index,total\na.jpg,ant,0.900000,,0,1\n"


def _fake_run(folder: Path) -> Path:
    """A marked run folder with a model and labels.json listing it (no TensorFlow needed)."""
    from clf.data.guardrails import claim_run_dir

    folder.mkdir()
    claim_run_dir(folder)
    (folder / "model.h5").write_bytes(b"the model")
    (folder / "labels.json").write_text(json.dumps({"artifacts": {"h5": ["model.h5"]}}))
    return folder


# -- 1. merge-predictions --output: the guard clf predict --output uses ---------------------

def test_r01_merge_predictions_never_writes_over_a_runs_files(tmp_path):
    run_dir = _fake_run(tmp_path / "run")
    (run_dir / "notes.csv").write_text("my notes\n")
    part = tmp_path / "part.csv"
    part.write_text(PART)
    for target in (run_dir / "model.h5", run_dir / "labels.json", run_dir / "notes.csv"):
        before = target.read_bytes()
        res = runner.invoke(app, ["merge-predictions", str(part), "--output", str(target), "--overwrite"])
        assert res.exit_code == 2, res.output
        assert "never written over a run's files" in res.output
        assert target.read_bytes() == before
    # an unmarked bundle: the artifacts its labels.json lists are protected too
    (run_dir / ".clf-run").unlink()
    res = runner.invoke(app, ["merge-predictions", str(part), "--output", str(run_dir / "model.h5"), "--overwrite"])
    assert res.exit_code == 2 and (run_dir / "model.h5").read_bytes() == b"the model"


def test_r01_merge_predictions_writes_a_new_file_and_an_existing_one_only_with_overwrite(tmp_path):
    part = tmp_path / "part.csv"
    part.write_text(PART)
    mine = tmp_path / "merged.csv"
    mine.write_text("mine\n")
    res = runner.invoke(app, ["merge-predictions", str(part), "--output", str(mine)])
    assert res.exit_code == 2 and "already exists" in res.output and mine.read_text() == "mine\n"
    res = runner.invoke(app, ["merge-predictions", str(part), "--output", str(mine), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert mine.read_text().startswith("path,class_1,probability_1,error\na.jpg,ant")


# -- 2. a config file never carries force ----------------------------------------------------

def test_r02_config_toml_is_written_without_force():
    from clf.config import config_to_toml

    assert "force" not in tomllib.loads(config_to_toml(clf.RunConfig(force=True, weights="none")))


def test_r02_force_in_a_config_file_is_refused_and_the_run_folder_kept(tmp_path, image_folder):
    run_dir = _fake_run(tmp_path / "run")
    (run_dir / "my-notes.txt").write_text("keep me\n")
    config = tmp_path / "config.toml"
    config.write_text(f'backbone = "{SMALL_BACKBONE}"\ndata = "{image_folder}"\nweights = "none"\n'
                      f'image_size = {SMALL_SIZE}\nepochs = 1\nbatch_size = 4\noutput = "{run_dir}"\n'
                      f'force = true\n')
    res = runner.invoke(app, ["run", "--config", str(config)])
    assert res.exit_code == 2, res.output
    assert "force = true" in res.output and "--force on the command line" in res.output
    assert (run_dir / "my-notes.txt").read_text() == "keep me\n" and (run_dir / "model.h5").is_file()


def test_r02_force_false_is_accepted_and_the_command_line_force_still_works(tmp_path):
    from clf.config import config_from_file

    config = tmp_path / "config.toml"
    config.write_text('weights = "none"\nforce = false\n')
    assert config_from_file(config).force is False
    config.write_text('weights = "none"\nforce = true\n')
    assert config_from_file(config, {"force": True}).force is True


# -- 3. export never writes over a file it did not create -----------------------------------

@pytest.mark.parametrize("marker", [True, False])
def test_r03_export_refuses_to_replace_a_file_the_run_did_not_write(trained_run, tmp_path, marker):
    run_dir = copy_run(trained_run, tmp_path / "run")
    if not marker:
        (run_dir / ".clf-run").unlink()
    mine = run_dir / "model.tflite"
    mine.write_bytes(b"my own tflite model")
    labels = (run_dir / "labels.json").read_bytes()
    res = runner.invoke(app, ["export", str(run_dir), "--export", "tflite", "--no-verify"])
    assert res.exit_code == 2, res.output
    assert "model.tflite" in res.output and "never replaces a file it did not write" in res.output
    assert mine.read_bytes() == b"my own tflite model"
    assert (run_dir / "labels.json").read_bytes() == labels
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".tmp-")]  # nothing left behind


def test_r03_export_adds_a_new_artifact_as_before(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    res = runner.invoke(app, ["export", str(run_dir), "--export", "tflite", "--no-verify"])
    assert res.exit_code == 0, res.output
    labels = json.loads((run_dir / "labels.json").read_text())
    assert labels["artifacts"]["tflite"] == ["model.tflite"] and "model.tflite" in labels["sha256"]
    assert clf.load_predictor(run_dir / "model.tflite").predict_batch(
        np.zeros((1, SMALL_SIZE, SMALL_SIZE, 3), np.float32)).shape == (1, 4)  # 3 classes, the known score
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".tmp-")]


# -- 9. export refuses a model whose sha256 changed, as predict does -------------------------

def test_r09_export_refuses_a_swapped_keras_model_unless_trusted(trained_run, tmp_path):
    import h5py

    run_dir = copy_run(trained_run, tmp_path / "run")
    with h5py.File(run_dir / "model.h5", "r+") as f:  # another valid model: one weight changed
        names: list[str] = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim else None)
        f[names[-1]][...] = np.asarray(f[names[-1]]) + 1.0
    res = runner.invoke(app, ["export", str(run_dir), "--export", "tflite", "--no-verify"])
    assert res.exit_code == 1, res.output
    assert "changed since it was exported" in res.output and "--trust-artifact" in res.output
    assert not (run_dir / "model.tflite").exists()
    res = runner.invoke(app, ["export", str(run_dir), "--export", "tflite", "--no-verify", "--trust-artifact"])
    assert res.exit_code == 0, res.output
    assert (run_dir / "model.tflite").is_file()


# -- 12. CSV cells that a spreadsheet would run as formulas ----------------------------------

FORMULAS = ["=HYPERLINK(x)", "+1+cmd", "-2+cmd", "@SUM(A1)"]


def test_r12_predictions_csv_quotes_file_names_that_start_a_formula(trained_run, tmp_path):
    folder = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name in FORMULAS:
        make_image(folder / f"{name}.jpg", 0, rng)
    res = runner.invoke(app, ["predict", str(trained_run.run_dir), str(folder), "--format", "csv",
                              "--output", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(io.StringIO((tmp_path / "p.csv").read_text())))[1:]
    assert len(rows) == len(FORMULAS)
    assert all(row[0].startswith(str(folder)) for row in rows)  # an absolute path starts with '/'
    # a relative path: the file name starts the cell, quoted
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        res = runner.invoke(app, ["predict", "--format", "csv", str(trained_run.run_dir), "--",
                                  *[f"{n}.jpg" for n in FORMULAS]])
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    cells = [row[0] for row in csv.reader(io.StringIO(res.stdout))][1:]
    assert cells == [f"'{n}.jpg" for n in FORMULAS]


def test_r12_confusion_matrix_is_quoted_too_and_quoting_reads_back():
    from clf.files import csv_cell, csv_value
    from clf.report.metrics import confusion_matrix_csv

    for name in FORMULAS:
        assert csv_cell(name) == "'" + name and csv_value(csv_cell(name)) == name
        assert csv_cell(csv_cell(name)) == csv_cell(name)  # idempotent: merging keeps a part's cells
    assert csv_cell("ant.jpg") == "ant.jpg" and csv_value("'quote.jpg") == "'quote.jpg"
    text = confusion_matrix_csv({"class_names": ["=evil", "cat"], "confusion_matrix": [[1, 0], [0, 1]]})
    assert text.splitlines()[0] == "true\\predicted,'=evil,cat" and text.splitlines()[1].startswith("'=evil,")


def test_r12_merge_quotes_a_raw_part(tmp_path):
    from clf.artifacts.shards import merge_predictions

    part = tmp_path / "part.csv"
    part.write_text("path,class_1,probability_1,error,index,total\n=cmd.jpg,@x,0.9,,0,1\n")
    fmt, text = merge_predictions([part])
    assert text.splitlines()[1] == "'=cmd.jpg,'@x,0.9,"


def test_r12_relabel_reads_back_the_quoted_names_it_and_the_page_write(tmp_path):
    from clf.inspect.relabel import apply_relabel, plan_relabel

    data = make_folder(tmp_path / "data", per_class=2)
    (data / "ant" / "ant_0.jpg").rename(data / "ant" / "=cmd.jpg")
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("file,label,new_label\nant/=cmd.jpg,ant,bee\n")
    apply_relabel(plan_relabel(data, fixes))
    assert (data / "bee" / "=cmd.jpg").is_file()
    # a class folder whose name starts a formula: the undo log quotes it and reads it back
    (data / "=x").mkdir()
    (data / "bee" / "=cmd.jpg").rename(data / "=x" / "@y.jpg")
    fixes.write_text("file,label,new_label\n'=x/@y.jpg,=x,bee\n")
    plan = plan_relabel(data, fixes)
    assert [m.source for m in plan.moves] == ["=x/@y.jpg"]
    log = apply_relabel(plan)
    assert "'=x/@y.jpg" in log.read_text()
    from clf.inspect.relabel import plan_undo

    assert [m.target for m in plan_undo(data, log).moves] == ["=x/@y.jpg"]


def test_r12_the_inspect_pages_fixes_csv_quotes_formulas():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    js = (Path(clf.__file__).parent / "inspect" / "page.js").read_text()
    function = re.search(r"  function csvField\(s\) \{.*?\n  \}\n", js, re.S).group(0)
    out = subprocess.run([node, "-e", function + "console.log(JSON.stringify(['=a', '@b', 'c,d', 'ant/x.jpg']"
                          ".map(csvField)))"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["'=a", "'@b", '"c,d"', "ant/x.jpg"]


# -- 13. plugins named only in a config file never load ------------------------------------

def test_r13_a_config_files_plugins_do_not_run_even_in_a_dry_run(tmp_path, image_folder):
    evil = tmp_path / "evil.py"
    ran = tmp_path / "ran"
    evil.write_text(f"open({str(ran)!r}, 'w').write('pwned')\n")
    config = tmp_path / "x.toml"
    config.write_text(f'backbone = "{SMALL_BACKBONE}"\ndata = "{image_folder}"\nweights = "none"\n'
                      f'image_size = {SMALL_SIZE}\nplugins = ["{evil}"]\n')
    res = runner.invoke(app, ["run", "--config", str(config), "--dry-run"])
    assert res.exit_code == 2, res.output
    assert "--plugin" in res.output and "evil.py" in res.output
    assert not ran.exists()
    # named on the command line, it is the user's choice: it loads
    res = runner.invoke(app, ["run", "--config", str(config), "--dry-run", "--plugin", str(evil)])
    assert res.exit_code == 0, res.output
    assert ran.read_text() == "pwned"


# -- the new user's first day ---------------------------------------------------------------

def test_verify_with_other_data_keeps_the_exports_record(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    record = json.loads((run_dir / "verification.json").read_text())
    assert record["images"]
    other = make_folder(tmp_path / "other", per_class=1, seed=3)
    res = runner.invoke(app, ["verify", str(run_dir / "model.h5"), "--data", str(other)])
    assert res.exit_code == 0, res.output
    after = json.loads((run_dir / "verification.json").read_text())
    assert {k: after[k] for k in ("images", "source", "results")} == \
        {k: record[k] for k in ("images", "source", "results")}
    [check] = after["other_checks"]
    assert check["source"] == "--data" and len(check["images"]) == 3
    assert all(str(other) in f for f in check["images"])
    # a later plain verify checks the export's images again
    from clf.artifacts.verify import verify_artifact

    report = verify_artifact(run_dir / "model.h5")
    assert report.images == record["images"]
    final = json.loads((run_dir / "verification.json").read_text())
    assert final["images"] == record["images"] and len(final["other_checks"]) == 1


def test_config_toml_records_absolute_paths(tmp_path, monkeypatch):
    from clf.config import config_to_toml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "w.h5").write_bytes(b"")
    (tmp_path / "p.py").write_text("")
    config = clf.RunConfig(data="data", weights="w.h5", cache_dir="cache", plugins=("p.py", "some_module"))
    values = tomllib.loads(config_to_toml(config))
    assert values["data"] == str(tmp_path / "data") and values["weights"] == str(tmp_path / "w.h5")
    assert values["cache_dir"] == str(tmp_path / "cache")
    assert values["plugins"] == [str(tmp_path / "p.py"), "some_module"]
    # what a loader takes that is not a path here is kept as written
    assert tomllib.loads(config_to_toml(clf.RunConfig(data="s3://bucket/photos")))["data"] == "s3://bucket/photos"


def test_r13_inspect_never_loads_the_plugins_a_runs_config_toml_names(trained_run, tmp_path):
    pytest.importorskip("cleanlab")
    run_dir = copy_run(trained_run, tmp_path / "run")
    evil, ran = tmp_path / "evil.py", tmp_path / "ran"
    evil.write_text(f"open({str(ran)!r}, 'w').write('pwned')\n")
    config = run_dir / "config.toml"
    config.write_text(re.sub(r"(?m)^plugins = .*$", f'plugins = ["{evil}"]', config.read_text()))
    assert f'plugins = ["{evil}"]' in config.read_text()
    clf.inspect_run(run_dir, folds=2)
    assert not ran.exists()
