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


# -- 3, 4. Files are looked at before they are read -------------------------------------------

# Runs the doctor in a child limited to 3 GiB of address space: before the fix it read a
# link to /dev/zero or a 6 GB sparse file whole (or hung on a FIFO) and this failed.
DOCTOR = """
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import json
from clf.data.doctor import examine
r = examine(sys.argv[1], convert=False)
print(json.dumps({b.path.rsplit('/', 1)[-1]: [b.kind, b.reason] for b in r.quarantined}))
sys.exit(0)
"""


def _doctor(folder: Path, timeout: float = 60) -> dict:
    res = subprocess.run([sys.executable, "-c", "import sys, resource\n" + DOCTOR, str(folder)],
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _sparse(path: Path, size: int = 6 * 2**30) -> Path:
    with open(path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")  # a JPEG's first bytes, then 6 GB of holes
        f.truncate(size)
    return path


def test_c03_doctor_never_reads_a_link_to_dev_zero_or_a_6gb_sparse_file(image_folder):
    (image_folder / "ant" / "zero.jpg").symlink_to("/dev/zero")
    _sparse(image_folder / "bee" / "huge.jpg")
    bad = _doctor(image_folder)
    assert bad["zero.jpg"][0] == "not_regular" and "character device behind a symbolic link" in bad["zero.jpg"][1]
    assert bad["huge.jpg"][0] == "too_large" and "6,442,450,944 bytes" in bad["huge.jpg"][1]


def test_c03_predict_never_reads_dev_zero_or_a_6gb_sparse_file(trained, tmp_path):
    run_dir, data = trained
    huge = _sparse(tmp_path / "huge.jpg")
    res = _cli("predict", str(run_dir), "/dev/zero", str(huge), str(data / "ant" / "ant_0.jpg"), "--json",
               limits="resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))", timeout=120)
    assert res.returncode == 1, res.stderr[-2000:]
    rows = {Path(r["path"]).name: r for r in json.loads(res.stdout)}
    assert "character device" in rows["zero"]["error"] and "limit" in rows["huge.jpg"]["error"]
    assert rows["ant_0.jpg"]["error"] is None and rows["ant_0.jpg"]["top"]


def test_c04_doctor_lists_a_link_to_a_fifo_instead_of_hanging(image_folder, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (image_folder / "ant" / "pipe.jpg").symlink_to(fifo)
    os.mkfifo(image_folder / "bee" / "plain_fifo.png")
    res = _cli("doctor", str(image_folder), "--json", timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    bad = {Path(b["path"]).name: b for b in json.loads(res.stdout)["quarantined"]}
    assert bad["pipe.jpg"]["kind"] == "not_regular" and "FIFO" in bad["pipe.jpg"]["reason"]
    assert "symbolic link" in bad["pipe.jpg"]["reason"] and bad["plain_fifo.png"]["kind"] == "not_regular"


def test_c04_c09_run_on_a_folder_with_a_fifo_link_and_a_latin1_name(image_folder, tmp_path):
    """One real `clf run` (a child, so a hang fails the test): a link to a FIFO is left out
    with its reason, a file name in Latin-1 bytes is trained on like any other."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (image_folder / "ant" / "pipe.jpg").symlink_to(fifo)
    latin1 = os.fsdecode(bytes(image_folder / "bee") + b"/caf\xe9.png")
    make_image(Path(latin1), 1, np.random.default_rng(5), fmt="PNG")
    out = tmp_path / "run"
    res = _cli("run", "--backbone", SMALL_BACKBONE, "--data", str(image_folder), "--weights", "none", "--epochs", "1",
               "--image-size", str(SMALL_SIZE), "--output", str(out), "--batch-size", "4", timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    quarantined = json.loads((out / "quarantine.json").read_text())["quarantined"]
    assert [Path(q["path"]).name for q in quarantined] == ["pipe.jpg"] and "FIFO" in quarantined[0]["reason"]
    split = json.loads((out / "manifest.json").read_text())["split"]
    assert "bee/caf\udce9.png" in split["train"]["bee"] + split["validation"]["bee"]


# -- 9. File names that are not UTF-8 ---------------------------------------------------------

def test_c09_predict_and_doctor_handle_a_latin1_file_name(trained, tmp_path):
    run_dir, _ = trained
    folder = tmp_path / "imgs"
    folder.mkdir()
    name = os.fsdecode(bytes(folder) + b"/caf\xe9.png")
    make_image(Path(name), 0, np.random.default_rng(1), fmt="PNG")
    res = runner.invoke(app, ["predict", str(run_dir), str(folder), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert "caf\\xe9.png" in res.output and len(res.output.strip().splitlines()) == 2
    out = tmp_path / "p.json"
    assert runner.invoke(app, ["predict", str(run_dir), name, "--output", str(out)]).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8"))[0]["path"].endswith("caf\\xe9.png")


def test_c09_a_class_folder_named_in_latin1_is_a_clear_error(image_folder):
    os.rename(image_folder / "cat", os.fsdecode(bytes(image_folder) + b"/ch\xe2t"))
    res = runner.invoke(app, ["doctor", str(image_folder)])
    assert res.exit_code == 1 and "not valid UTF-8" in res.output and "ch\\xe2t" in res.output
    assert "Traceback" not in res.output


# -- 13. The pixel limit in predict and evaluate; a bound on --image-size ----------------------

def _huge_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid 1-bit PNG of width x height (a few hundred KB on disk, gigabytes decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_c13_predict_and_evaluate_refuse_a_20000x20000_png_from_its_header(trained, tmp_path):
    run_dir, data = trained
    evaluation = make_folder(tmp_path / "eval", per_class=1)
    _huge_png(evaluation / "ant" / "huge.png")
    # A child limited to 4 GiB: before the fix TensorFlow decoded it (1.2 GB, then 4.8 GB as float).
    limit = "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))"
    res = _cli("predict", str(run_dir), str(evaluation / "ant"), "--json", limits=limit, timeout=120)
    assert res.returncode == 1, res.stderr[-2000:]
    rows = {Path(r["path"]).name: r for r in json.loads(res.stdout)}
    assert "400,000,000 pixels" in rows["huge.png"]["error"] and "limit" in rows["huge.png"]["error"]
    assert rows["ant_0.jpg"]["error"] is None
    res = _cli("evaluate", str(run_dir), "--data", str(evaluation), "--output", str(tmp_path / "ev"),
               limits=limit, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "huge.png" in res.stderr and "pixel" in res.stderr
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["splits"]["evaluation"]["images"] == 3


def test_c13_the_same_pixel_limit_holds_for_a_decodable_image(trained, tmp_path, monkeypatch):
    from clf.data import filecheck

    run_dir, data = trained
    monkeypatch.setattr(filecheck, "MAX_PIXELS", 39 * 40)  # the test images are 40x40
    res = runner.invoke(app, ["predict", str(run_dir), str(data / "ant" / "ant_0.jpg"), "--json"])
    assert res.exit_code == 1 and "40x40 px" in json.loads(res.stdout)[0]["error"]
    report = clf.examine(data, convert=False)
    assert {b.kind for b in report.quarantined} == {"too_large"} and len(report.quarantined) == 15


def test_c13_image_size_has_an_upper_bound(image_folder):
    with pytest.raises(clf.ConfigError, match="at most 2048 pixels"):
        clf.RunConfig(image_size=100000)
    res = runner.invoke(app, ["run", "--data", str(image_folder), "--image-size", "100000", "--weights", "none"])
    assert res.exit_code == 2 and "at most 2048" in res.output
