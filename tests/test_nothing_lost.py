"""Issue 13, "Nothing lost, round two": every numbered attack of the issue as a test.

Test names start with the case number (c01 ... c16). Cases that could hang, segfault or
eat memory before the fix run in a subprocess with a timeout and resource limits, so a
regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf import UsageError
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder, make_image

runner = CliRunner()


def _cli(*args: str, env: dict | None = None, timeout: float = 120, limits: str = "") -> subprocess.CompletedProcess:
    """``clf ARGS`` in a fresh interpreter. ``limits``: Python run first in the child (for
    ``resource.setrlimit``); a hang becomes a failed test after ``timeout`` seconds."""
    code = f"import sys, resource, signal\n{limits}\nfrom clf.cli import main\nsys.argv = ['clf', *sys.argv[1:]]\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "300", **(env or {})})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run exported as h5 and tflite, shared by the module's tests (not modified)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_folder(root / "data", per_class=5)
    result = clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=1,
                                   batch_size=4, image_size=SMALL_SIZE, output=str(root / "run"),
                                   augment=False, export="h5,tflite", cache=False))
    return result.run_dir, data


def _copy_run(trained, tmp_path) -> Path:
    import shutil

    run_dir = tmp_path / "victim"
    shutil.copytree(trained[0], run_dir)
    return run_dir


# -- 1. --force replaces only a folder clf created ----------------------------------------

def test_c01_force_refuses_a_project_folder_that_merely_has_config_toml(tmp_path, image_folder):
    project = tmp_path / "myproj"
    (project / "src").mkdir(parents=True)
    (project / "config.toml").write_text("name = 'thesis'\n")
    (project / "src" / "important.py").write_text("print('years of work')\n")
    (project / "thesis.tex").write_text("\\documentclass{article}\n")
    (project / "checkpoint").mkdir()
    res = runner.invoke(app, ["run", "--backbone", SMALL_BACKBONE, "--data", str(image_folder), "--weights", "none",
                              "--image-size", str(SMALL_SIZE), "--epochs", "1", "--output", str(project), "--force"])
    assert res.exit_code == 2, res.output
    assert "not a clf run folder" in res.output and ".clf-run" in res.output and "Refusing" in res.output
    assert (project / "src" / "important.py").read_text() == "print('years of work')\n"
    assert (project / "thesis.tex").is_file() and (project / "config.toml").is_file()


def test_c01_a_run_folder_carries_the_marker_and_only_that_makes_it_replaceable(trained, tmp_path):
    from clf.data.guardrails import check_output, read_run_marker, replace_output

    run_dir = _copy_run(trained, tmp_path)
    marker = read_run_marker(run_dir)
    assert marker["format"] == "clf-run/1" and len(marker["run_id"]) == 32
    check_output(str(run_dir), force=True)  # accepted: clf made it
    (run_dir / ".clf-run").unlink()  # the same files without the marker: refused
    with pytest.raises(UsageError, match="not a clf run folder"):
        check_output(str(run_dir), force=True)
    (run_dir / ".clf-run").write_text(json.dumps(marker))
    replace_output(run_dir)
    assert not run_dir.exists()


def test_c01_replace_output_itself_refuses_without_the_marker(tmp_path):
    from clf.data.guardrails import replace_output

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "model.h5").write_bytes(b"someone else's model")
    (folder / ".clf-run").write_text('{"format": "something else"}')  # not a valid marker
    with pytest.raises(UsageError, match="not a clf run folder"):
        replace_output(folder)
    assert (folder / "model.h5").is_file()


# -- 2. predict --output never destroys a file it did not create ---------------------------

def test_c02_predict_output_never_overwrites_a_runs_model(trained, tmp_path):
    run_dir = _copy_run(trained, tmp_path)
    model = run_dir / "model.h5"
    before = model.read_bytes()
    images = trained[1] / "ant"
    for args in (["--output", str(model)], ["--output", str(model), "--overwrite"],
                 ["--output", str(run_dir / "labels.json"), "--overwrite"],
                 ["--output", str(run_dir / "checkpoint" / "x.csv"), "--format", "csv"]):
        res = runner.invoke(app, ["predict", str(run_dir), str(images), "--format", "csv", *args])
        assert res.exit_code == 2, res.output
        assert "never written over a run's files" in res.output
    link = tmp_path / "innocent.csv"
    link.symlink_to(model)  # a link into the run is followed, and refused too
    res = runner.invoke(app, ["predict", str(run_dir), str(images), "--output", str(link), "--overwrite"])
    assert res.exit_code == 2 and "model artifact 'model.h5'" in res.output
    assert model.read_bytes() == before
    assert clf.load_predictor(model).predict_batch(np.zeros((1, SMALL_SIZE, SMALL_SIZE, 3), np.float32)).shape == (1, 3)


def test_c02_predict_output_refuses_an_existing_file_unless_overwrite(trained, tmp_path):
    run_dir, data = trained
    notes = tmp_path / "notes.csv"
    notes.write_text("my own notes\n")
    res = runner.invoke(app, ["predict", str(run_dir), str(data / "ant"), "--output", str(notes)])
    assert res.exit_code == 2 and "already exists" in res.output and "--overwrite" in res.output
    assert notes.read_text() == "my own notes\n"
    res = runner.invoke(app, ["predict", str(run_dir), str(data / "ant"), "--output", str(notes), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert notes.read_text().startswith("path,class_1,probability_1,error")
    fresh = tmp_path / "sub" / ".." / "fresh.json"
    (tmp_path / "sub").mkdir()
    res = runner.invoke(app, ["predict", str(run_dir), str(data / "ant"), "--output", str(fresh)])
    assert res.exit_code == 0 and len(json.loads((tmp_path / "fresh.json").read_text())) == 5
