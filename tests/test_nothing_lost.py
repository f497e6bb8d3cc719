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
                                   augment=False, export="h5,tflite", cache=False, solver="keras",
                                   verify=False))
    return result.run_dir, data  # Keras fit: the resume tests need its epoch checkpoint


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
    # 3 class probabilities, then the known score
    assert clf.load_predictor(model).predict_batch(np.zeros((1, SMALL_SIZE, SMALL_SIZE, 3), np.float32)).shape == (1, 4)


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
    assert "caf\\xe9.png" in res.stdout and len(res.stdout.strip().splitlines()) == 2  # header and one row
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


# -- 10. labels.json is validated when loaded -------------------------------------------------

def _bundle_with(trained, tmp_path, name: str, change) -> Path:
    """A copy of the trained bundle whose labels.json went through ``change(labels)``."""
    import shutil

    folder = tmp_path / name
    folder.mkdir()
    for f in ("model.h5", "model.weights.h5", "model.tflite"):
        shutil.copy(trained[0] / f, folder / f)
    labels = json.loads((trained[0] / "labels.json").read_text())
    change(labels)
    (folder / "labels.json").write_text(json.dumps(labels))
    return folder


MALFORMED = {
    "names_a_string": (lambda d: d.update(class_names="ant,bee,cat"), "class_names is 'ant,bee,cat'"),
    "names_numbers": (lambda d: d.update(class_names=[1, 2, 3]), "class_names[0] is 1"),
    "names_twice": (lambda d: d.update(class_names=["ant", "ant", "cat"]), "distinct names"),
    "size_text": (lambda d: d.update(input_size="32"), "input_size is '32'"),
    "size_zero": (lambda d: d.update(input_size=[0, 32]), "input_size is [0, 32]"),
    "size_huge": (lambda d: d.update(input_size=[100000, 100000]), "two integers from 1 to 2048"),
    "resize_list": (lambda d: d.update(resize=[1]), "resize is [1]"),
    "crop_nan": (lambda d: d["resize"].update(center_crop=float("nan")), "resize.center_crop is nan"),
    "crop_text": (lambda d: d["resize"].update(center_crop="nan"), "resize.center_crop is 'nan'"),
    "artifacts_list": (lambda d: d.update(artifacts=["model.h5"]), "artifacts is ['model.h5']"),
    "artifact_elsewhere": (lambda d: d["artifacts"].update(h5=["/tmp/other/model.h5"]), "no absolute paths"),
    "artifact_up": (lambda d: d["artifacts"].update(h5=["../model.h5"]), "no folders"),
    "sha_bad": (lambda d: d["sha256"].update({"model.h5": 5}), "sha256['model.h5'] is 5"),
    "not_an_object": (lambda d: (d.clear(), d.update({"class_names": {"0": "ant"}})), "class_names is {'0': 'ant'}"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_c10_a_malformed_labels_json_is_a_clear_error(trained, tmp_path, case):
    change, expected = MALFORMED[case]
    folder = _bundle_with(trained, tmp_path, case, change)
    res = runner.invoke(app, ["predict", str(folder), str(trained[1] / "ant"), "--json"])
    assert res.exit_code == 1, res.output
    assert "is not a valid clf label record" in res.output and expected in res.output, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)


@pytest.mark.parametrize("names", [["ant"], ["ant", "bee"], ["a", "b", "c", "d", "e"]])
def test_c10_class_count_must_equal_the_models_outputs(trained, tmp_path, names):
    folder = _bundle_with(trained, tmp_path, f"n{len(names)}", lambda d: d.update(class_names=names))
    for model in (folder, folder / "model.tflite"):
        res = runner.invoke(app, ["predict", str(model), str(trained[1] / "ant")])
        assert res.exit_code == 1 and f"lists {len(names)} class name(s)" in res.output, res.output
        assert "outputs 4 score(s)" in res.output  # 3 classes, then the known score
    res = runner.invoke(app, ["evaluate", str(folder), "--data", str(trained[1])])
    assert res.exit_code == 1 and "outputs 4 score(s)" in res.output and "reshape" not in res.output


# -- 11, 12. Artifacts are checked against the sha256 recorded at export -----------------------

FLIPPED = """
import clf
bad = 0
for folder in sys.argv[1:]:
    try:
        clf.load_predictor(folder + "/model.tflite")
    except clf.ModelError as exc:
        bad += "changed since it was exported" in str(exc)
print(bad)
"""


def test_c11_bit_flipped_tflite_files_never_reach_the_interpreter(trained, tmp_path):
    """Ten copies with one random byte flipped each (3 of 10 segfaulted the interpreter
    before): all refused by their sha256, in a child so a crash fails only this test."""
    original = (trained[0] / "model.tflite").read_bytes()
    rng = np.random.default_rng(13)
    folders = []
    for k in range(10):
        folder = _bundle_with(trained, tmp_path, f"flip{k}", lambda d: None)
        data = bytearray(original)
        at = int(rng.integers(0, len(data)))
        data[at] ^= 1 << int(rng.integers(0, 8))
        (folder / "model.tflite").write_bytes(bytes(data))
        folders.append(str(folder))
    res = subprocess.run([sys.executable, "-c", "import sys\n" + FLIPPED, *folders], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "10"
    one = runner.invoke(app, ["predict", folders[0] + "/model.tflite", str(trained[1] / "ant")])
    assert one.exit_code == 1 and "changed since it was exported" in one.output and "--trust-artifact" in one.output


def test_c11_a_model_without_a_recorded_sha256_needs_trust(trained, tmp_path):
    folder = _bundle_with(trained, tmp_path, "nosha", lambda d: d.pop("sha256", None))
    res = runner.invoke(app, ["predict", str(folder), str(trained[1] / "ant")])
    assert res.exit_code == 1 and "no sha256 recorded" in res.output
    res = runner.invoke(app, ["predict", str(folder), str(trained[1] / "ant"), "--trust-artifact"])
    assert res.exit_code == 0, res.output


def _file_writing_savedmodel(path: Path, marker: Path) -> None:
    """A SavedModel whose serving graph writes ``marker`` each time it runs."""
    import tensorflow as tf

    class Writes(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, SMALL_SIZE, SMALL_SIZE, 3], tf.float32, name="image")])
        def serve(self, image):
            tf.io.write_file(str(marker), "written by the model")
            return {"probabilities": tf.fill([tf.shape(image)[0], 4], 1 / 3)}  # 3 classes, the known score

    module = Writes()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def test_c12_a_savedmodel_that_writes_files_is_not_run_unless_trusted(trained, tmp_path):
    marker = tmp_path / "written_by_the_model.txt"
    folder = _bundle_with(trained, tmp_path, "swapped", lambda d: (
        d["artifacts"].update(savedmodel=["saved_model"]), d.setdefault("sha256", {}).update(saved_model="0" * 64)))
    _file_writing_savedmodel(folder / "saved_model", marker)
    res = runner.invoke(app, ["predict", str(folder / "saved_model"), str(trained[1] / "ant")])
    assert res.exit_code == 1 and "changed since it was exported" in res.output
    assert not marker.exists()
    # --trust-artifact runs it, and its graph does what it says: models are programs.
    res = runner.invoke(app, ["predict", str(folder / "saved_model"), str(trained[1] / "ant"), "--trust-artifact"])
    assert res.exit_code == 0, res.output
    assert marker.read_text() == "written by the model"


# -- 16. Smaller things --------------------------------------------------------------------------

def test_c16_random_bytes_in_a_keras_file_are_named_as_such(trained, tmp_path):
    import hashlib

    junk = os.urandom(5000)

    def keras_junk(d):
        d["artifacts"] = {"keras": ["model.keras"]}
        d["sha256"] = {"model.keras": hashlib.sha256(junk).hexdigest()}  # as if exported so: the check passes

    folder = _bundle_with(trained, tmp_path, "junk", keras_junk)
    (folder / "model.keras").write_bytes(junk)
    res = runner.invoke(app, ["predict", str(folder), str(trained[1] / "ant")])
    assert res.exit_code == 1 and "not a zip archive" in res.output and "File not found" not in res.output


# -- 5, 6. The feature cache: damaged shards and unusable folders -----------------------------

from test_features import extraction  # noqa: E402,F401  (the fixture: bundle, extractor, cache)


def _damage(shard: Path, how: str) -> None:
    data = bytearray(shard.read_bytes())
    if how == "truncated":
        shard.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "bit_flipped":
        data[len(data) // 2] ^= 0x10
        shard.write_bytes(bytes(data))
    else:  # a valid .npz under the same name, with other features in it
        import io

        with np.load(io.BytesIO(bytes(data))) as npz:
            hashes, features = npz["hashes"], npz["features"]
        buf = io.BytesIO()
        np.savez(buf, hashes=hashes, features=np.zeros_like(features))
        shard.write_bytes(buf.getvalue())


@pytest.mark.parametrize("how", ["truncated", "bit_flipped", "valid_but_other_features"])
def test_c05_a_damaged_shard_is_a_miss_moved_aside_and_reported_once(extraction, how):
    from clf.train.features import split_features

    _, load, extractor, cache = extraction
    cold = split_features(load(), "train", extractor, 4, cache=cache())
    (shard,) = cache().dir.glob("clean-*.npz")
    _damage(shard, how)
    seen = []
    first = cache()
    first.note = seen.append
    again = split_features(load(), "train", extractor, 4, cache=first)
    assert (again.extracted, again.cached) == (12, 0)
    np.testing.assert_allclose(again.features, cold.features, atol=1e-6)  # never the damaged features
    assert len(seen) == 1 and shard.name in seen[0] and "damaged" in seen[0]
    assert (first.dir / "bad" / shard.name).is_file()
    import hashlib  # the re-extracted features were stored again: a sound shard, same content, same name

    assert hashlib.sha256(shard.read_bytes()).hexdigest() in shard.name
    later = cache()
    warm = split_features(load(), "train", extractor, 4, cache=later)
    assert (warm.extracted, warm.cached) == (0, 12) and later.notes == []  # reported once


def test_c05_a_run_after_a_damaged_shard_trains_as_before(small_config, tmp_path, feature_cache_dir):
    first = clf.run(small_config(epochs=2))
    for shard in feature_cache_dir.rglob("clean-*.npz"):
        _damage(shard, "truncated")
    second = clf.run(small_config(epochs=2, output=str(tmp_path / "again")))
    assert second.extraction["train"] == {"extracted": 15, "cached": 0}
    assert second.metrics["validation_loss"] == pytest.approx(first.metrics["validation_loss"], rel=1e-5)
    assert len(list(feature_cache_dir.rglob("bad/clean-*.npz"))) == 2


def test_c05_c06_the_run_shows_cache_notes(small_config, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    obs = clf.RecordingObserver()
    clf.run(small_config(cache_dir=str(blocker)), obs)
    assert sum("is unusable" in n for n in obs.notes()) == 1


def test_c06_a_cache_dir_that_is_a_file_means_features_in_memory(small_config, tmp_path):
    from clf.train.feature_cache import FeatureCache

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    result = clf.run(small_config(cache_dir=str(blocker)))
    assert result.extraction["train"] == {"extracted": 15, "cached": 0} and blocker.read_text() == "x"
    cache = FeatureCache(blocker / "sub", {"k": 1})
    cache.store("clean", ["a", "b"], np.ones((2, 4), np.float32))
    cache.store("clean", ["c"], np.ones((1, 4), np.float32))
    assert len(cache.notes) == 1 and "is unusable" in cache.notes[0] and "kept in memory" in cache.notes[0]
    assert set(cache.lookup("clean", ["a", "b", "c"])[0]) == {0, 1, 2}  # still served, from memory


def test_c06_a_full_disk_under_the_cache_means_features_in_memory(extraction):
    """Writes past a small file-size limit fail (EFBIG), as on a full disk."""
    import resource
    import signal

    from clf.train.features import split_features

    _, load, extractor, cache = extraction
    bundle = load()
    reference = split_features(bundle, "train", extractor, 4)
    full = cache()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        feats = split_features(bundle, "train", extractor, 4, cache=full)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    np.testing.assert_allclose(feats.features, reference.features, atol=1e-6)
    assert full.usable is False and len(full.notes) == 1 and "too large" in full.notes[0].lower()
    assert not list(full.dir.glob("clean-*.npz")) and not list(full.dir.glob(".tmp-*"))


# -- 11 (checkpoints). A damaged latest checkpoint falls back to the previous one ---------------

@pytest.fixture
def truncated_checkpoint(small_config):
    from clf.train import checkpoint

    result = clf.run(small_config(epochs=3))
    weights = result.run_dir / "checkpoint" / "train-epoch-0003" / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:100])
    return result.run_dir, checkpoint


def test_c11_a_truncated_checkpoint_falls_back_to_the_previous_one(truncated_checkpoint):
    run_dir, checkpoint = truncated_checkpoint
    ckpt = checkpoint.require(run_dir)
    assert ckpt.epoch == 2 and "train-epoch-0003 is damaged" in ckpt.note and "weights.npz" in ckpt.note
    res = runner.invoke(app, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "BadZipFile" not in res.output and f"Resuming {run_dir} after epoch 2 of 3" in res.output
    assert checkpoint.latest(run_dir).epoch == 3 and checkpoint.latest(run_dir).note is None


def test_c11_resume_says_it_passed_a_damaged_checkpoint_over(truncated_checkpoint):
    run_dir, _ = truncated_checkpoint
    res = runner.invoke(app, ["run", "--resume", str(run_dir)])
    assert "train-epoch-0003 is damaged" in res.output


def test_c11_no_sound_checkpoint_left_is_a_clear_error(truncated_checkpoint):
    run_dir, _ = truncated_checkpoint
    (run_dir / "checkpoint" / "train-epoch-0002" / "optimizer.npz").write_bytes(b"PK\x03\x04 damaged")
    res = runner.invoke(app, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 2 and "no complete checkpoint" in res.output and "damaged: train-epoch-0002" in res.output
    assert "Traceback" not in res.output


# -- 7. A full disk during export; orphans of a killed export ----------------------------------

def _tmp_names(run_dir: Path) -> list[str]:
    return sorted(p.name for folder in (run_dir, run_dir / "checkpoint") for p in folder.iterdir()
                  if ".tmp" in p.name)


def test_c07_export_checks_free_space_before_writing(trained, tmp_path, monkeypatch):
    from clf.artifacts import exporting

    run_dir = _copy_run(trained, tmp_path)
    before = {name: (run_dir / name).read_bytes() for name in ("model.h5", "model.tflite", "labels.json")}
    monkeypatch.setattr(exporting, "free_bytes", lambda path: 5 * 2**20)  # a disk with 5 MiB left
    res = runner.invoke(app, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 1, res.output
    assert "Not enough free space" in res.output and "5 MiB free" in res.output
    assert f"clf run --resume {run_dir}" in res.output
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert _tmp_names(run_dir) == []


def test_c07_a_write_failing_mid_export_is_clean_and_leaves_no_temp_files(trained, tmp_path):
    """Past a 1 MB file-size limit writes fail (EFBIG) as on a full disk: a clear error,
    exit 1 (not a crash), the previous artifacts intact, no temporary file left."""
    run_dir = _copy_run(trained, tmp_path)
    before = {name: (run_dir / name).read_bytes() for name in ("model.h5", "model.tflite", "labels.json")}
    limit = ("signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
             "resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))")
    res = _cli("run", "--resume", str(run_dir), limits=limit, timeout=240)
    assert res.returncode == 1, (res.returncode, res.stdout[-2000:], res.stderr[-3000:])
    assert "Exporter 'h5'" in res.stderr and "file-size limit" in res.stderr and "Traceback" not in res.stderr
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert _tmp_names(run_dir) == []


def test_c07_resume_removes_what_a_killed_export_left(trained, tmp_path):
    run_dir = _copy_run(trained, tmp_path)
    (run_dir / ".tmp-4242-model.h5").write_bytes(b"half a model")
    (run_dir / ".tmp-saved_model" / "variables").mkdir(parents=True)
    (run_dir / "labels.json.tmp").write_text("{")
    (run_dir / "checkpoint" / ".train-epoch-0002.tmp-77").mkdir()
    (run_dir / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert _tmp_names(run_dir) == [] and (run_dir / "notes.txt").read_text() == "mine"


# -- 16. Ctrl-C outside training says where it stopped ------------------------------------------

@pytest.mark.parametrize("where", ["extract", "export"])
def test_c16_ctrl_c_during_extraction_or_export_says_so(image_folder, tmp_path, monkeypatch, where):
    import clf.artifacts.exporting
    import clf.train.extraction

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    target = (clf.train.extraction, "split_features") if where == "extract" else (clf.artifacts.exporting, "record_digests")
    monkeypatch.setattr(*target, interrupt)
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--backbone", SMALL_BACKBONE, "--data", str(image_folder), "--weights", "none",
                              "--image-size", str(SMALL_SIZE), "--epochs", "1", "--output", str(out),
                              "--solver", "keras"])  # an epoch checkpoint to resume from
    assert res.exit_code == 130, res.output
    assert f"Interrupted (Ctrl-C) during {where}." in res.output
    if where == "export":
        assert f"Epoch 1 is saved; continue with: clf run --resume {out}" in res.output
        assert _tmp_names(out) == []
    else:
        assert "Nothing was saved to resume from" in res.output


# -- 8. Weights from a mirror are loaded into their architecture before they are cached ---------

from test_weights import keras_home, legacy_weights, mirror  # noqa: E402,F401  (fixtures, helper)

MOBILENET_050 = "tensorflow/keras-applications/mobilenet/mobilenet_5_0_224_tf_no_top.h5"
MOBILENET_025_FILE = "tensorflow/keras-applications/mobilenet/mobilenet_2_5_224_tf_no_top.h5"


def test_c08_a_mirror_serving_junk_leaves_nothing_in_the_cache(keras_home, mirror, monkeypatch):
    www, url = mirror
    (www / MOBILENET_050).parent.mkdir(parents=True)
    (www / MOBILENET_050).write_bytes(b"<html>mirror error page</html>" + b" " * 1070)  # 1100 bytes of junk
    res = runner.invoke(app, ["weights", "fetch", "mobilenet_050", "--mirror", url])
    assert res.exit_code == 1, res.output
    assert "does not load into backbone 'mobilenet_050'" in res.output and "discarded" in res.output
    assert not keras_home.exists() or list(keras_home.iterdir()) == []
    # the same junk through a run's download (--weights imagenet): refused, nothing cached
    monkeypatch.setenv("CLF_WEIGHTS_MIRROR", url)
    with pytest.raises(clf.WeightsError, match="does not load into the model.*discarded"):
        clf.get_host().backbones.get("mobilenet_050").build((224, 224, 3), "imagenet")
    assert not keras_home.exists() or list(keras_home.iterdir()) == []
    legacy_weights(www / MOBILENET_050, alpha=0.5)  # a file that loads: fetched and cached
    res = runner.invoke(app, ["weights", "fetch", "mobilenet_050", "--mirror", url])
    assert res.exit_code == 0 and "ok mobilenet_050" in res.output, res.output
    assert [p.name for p in keras_home.iterdir()] == ["mobilenet_5_0_224_tf_no_top.h5"]


def test_c08_mobilenet_025_has_a_pinned_sha256(keras_home, mirror):
    from conftest import MOBILENET_025, require_shared

    require_shared(MOBILENET_025)
    www, url = mirror
    # The same weights, re-saved: it loads, but it is not the original Keras file.
    legacy_weights(www / MOBILENET_025_FILE, alpha=0.25, source=MOBILENET_025)
    res = runner.invoke(app, ["weights", "fetch", "mobilenet_025", "--mirror", url])
    assert res.exit_code == 1 and "its sha256 is" in res.output and "dbdb03ee" in res.output, res.output
    assert not keras_home.exists() or list(keras_home.iterdir()) == []
    bb = clf.get_host().backbones.get("mobilenet_025")
    assert bb.imagenet_file.algorithm == "sha256" and bb.imagenet_file.file_hash is None  # Keras has none


# -- 15. Text from outside clf is never taken for rich markup -----------------------------------

def test_c15_markup_in_a_path_is_shown_as_it_is():
    res = runner.invoke(app, ["run", "--data", "nope[/]x", "--weights", "none"])
    assert res.exit_code == 2 and "MarkupError" not in res.output  # a path that is not there: exit 2
    assert "'nope[/]x' does not exist" in res.output


def test_c15_brackets_in_class_names_and_file_names_survive(tmp_path, trained):
    data = make_folder(tmp_path / "data", classes=("[red]ant", "bee[/]", ":cat:"), per_class=3)
    (data / "bee[/]" / "[bold]broken.jpg").write_bytes(b"not an image")
    res = runner.invoke(app, ["doctor", str(data)], env={"COLUMNS": "400"})  # no folded paths
    assert res.exit_code == 0, res.output
    assert "[red]ant" in res.output and "bee[/]" in res.output and ":cat:" in res.output
    assert "[bold]broken.jpg" in res.output
    images = tmp_path / "[b]imgs"
    make_image(images / "[i]x.jpg", 0, np.random.default_rng(0))
    res = runner.invoke(app, ["predict", str(trained[0]), str(images)], env={"COLUMNS": "400"})
    assert res.exit_code == 0 and "[i]x.jpg" in res.output, res.output


def test_c15_reports_and_notes_keep_brackets():
    from rich.console import Console

    from clf.cli.render import PlainObserver, print_report
    from clf.report.metrics import evaluation_report

    console = Console(record=True, width=200, emoji=False)
    PlainObserver(console).note("cache [dim]/x[/] is unusable")
    report = evaluation_report([0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]), ["[red]a", "b[/b]"])
    print_report(console, report, "val[/]")
    text = console.export_text()
    assert "cache [dim]/x[/] is unusable" in text and "[red]a" in text and "b[/b]" in text and "val[/]" in text


# -- 14. Many classes: plots and tables stay readable and proportional ----------------------------

def test_c14_two_hundred_classes_plot_fast_and_print_top_confusions(tmp_path):
    """The 200-class matrix took 267 s and 4 GB in matplotlib (40000 cell labels) and printed
    a 200-column table; now a row-normalised heat map with the top confusions, in seconds."""
    import resource
    import time

    from rich.console import Console

    from clf.cli.render import print_report
    from clf.report.metrics import evaluation_report
    from clf.report.plots import plot_confusion_matrix

    n = 200
    rng = np.random.default_rng(0)
    names = [f"class_{i:03d}" for i in range(n)]
    report = evaluation_report(np.repeat(np.arange(n), 2), rng.dirichlet(np.full(n, 0.05), size=2 * n), names)
    t0 = time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    png = plot_confusion_matrix(report, tmp_path / "cm.png")
    assert time.perf_counter() - t0 < 30 and png.stat().st_size < 500_000
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 500_000  # KiB: under 0.5 GB more
    console = Console(record=True, width=120)
    print_report(console, report, "validation")
    text = console.export_text()
    assert "top confusions of 200 classes" in text and "30 lowest F1 of 200" in text
    assert max(len(line) for line in text.splitlines()) <= 120 and len(text.splitlines()) < 100
    few = evaluation_report([0, 1, 2], np.eye(3)[[0, 2, 1]], ["a", "b", "c"])
    console = Console(record=True, width=120)
    print_report(console, few, "validation")
    assert "confusion matrix" in console.export_text()  # a few classes: the full matrix, as before


def test_c14_the_run_log_lists_many_classes_in_one_line(tmp_path):
    from rich.console import Console

    from clf.cli.render import PlainObserver

    console = Console(record=True, width=200)
    names = [f"c{i}" for i in range(200)]
    PlainObserver(console).phase_end("data", class_names=names, counts={"train": {n: 2 for n in names}})
    lines = console.export_text().splitlines()
    assert lines == ["classes (200): c0, c1, c2, c3, c4, ..., c198, c199", "  train: 400 images (2 to 2 per class)"]


class ForgetfulBackbonePlugin:
    """A plugin whose build function forgets to return its model."""

    @clf.hookimpl
    def register_backbones(self, register):
        def build(input_shape, weights):
            import keras

            keras.Input(input_shape)  # ... and no return

        register("forgetful", build, preprocess="rescale", input_size=(32, 32), description="returns None")


def test_c16_a_backbone_build_returning_none_is_a_plugin_error(host, small_config):
    host.register(ForgetfulBackbonePlugin(), name="forgetful-plugin")
    with pytest.raises(clf.PluginError, match="built NoneType .* instead of a keras.Model.*missing 'return'"):
        clf.run(small_config(backbone="forgetful"), host=host)


def test_c16_weights_given_a_folder_says_it_is_a_folder(small_config, tmp_path):
    folder = tmp_path / "weights_dir"
    folder.mkdir()
    with pytest.raises(clf.WeightsError, match="is a folder; expected a weights file"):
        clf.run(small_config(weights=str(folder)))
