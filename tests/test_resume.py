"""Checkpoint every epoch, resume after SIGKILL or Ctrl-C, and end where an uninterrupted run ends."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clf.train import checkpoint
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE, copy_run, make_folder

runner = CliRunner()
EPOCHS = 5

# A plugin callback that slows each epoch down (so a kill lands mid-training) or, with
# CLF_TEST_INTERRUPT_AT=k, raises KeyboardInterrupt after epoch k, as Ctrl-C does.
PLUGIN = '''
import os, time
import clf

def make(config, run_dir):
    import keras

    class Slow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if os.environ.get("CLF_TEST_INTERRUPT_AT") == str(epoch + 1):
                raise KeyboardInterrupt
            time.sleep(float(os.environ.get("CLF_TEST_EPOCH_SLEEP", "0")))

    return Slow()

@clf.hookimpl
def register_callbacks(register):
    register("slow_epochs", make)
'''


def _args(data, out, plugin):
    return ["run", "--backbone", SMALL_BACKBONE, "--data", str(data), "--epochs", str(EPOCHS),
            "--batch-size", "4", "--image-size", str(SMALL_SIZE), "--weights", "none", "--no-augment",
            "--output", str(out), "--seed", "3", "--plugin", str(plugin), "--solver", "keras",
            "--no-verify"]  # resuming is about the training state; verification has its own tests


def _final(run_dir):
    ckpt = checkpoint.latest(run_dir, "train")
    with np.load(ckpt.path / "weights.npz") as w:
        weights = [w[k] for k in sorted(w.files, key=lambda k: int(k.split("_")[1]))]
    return ckpt, weights


@pytest.fixture(scope="session")
def plugin(tmp_path_factory):
    # One file for the session: the CLI's process-wide plugin host keeps a --plugin loaded,
    # and a second file registering the same callback name would be a duplicate.
    path = tmp_path_factory.mktemp("plugin") / "slow_epochs_plugin.py"
    path.write_text(PLUGIN)
    return path


def _assert_same_run(a, b):
    ca, wa = _final(a)
    cb, wb = _final(b)
    assert ca.epoch == cb.epoch == EPOCHS
    assert set(ca.history) == set(cb.history)
    for key in ca.history:
        np.testing.assert_allclose(ca.history[key], cb.history[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, plugin):
    """The uninterrupted run (and its images) that the interrupted ones must end equal to."""
    root = tmp_path_factory.mktemp("straight")
    data = make_folder(root / "data")
    res = runner.invoke(app, _args(data, root / "run", plugin))
    assert res.exit_code == 0, res.output
    return data, root / "run"


def test_checkpoint_every_epoch_is_atomic_and_keeps_the_latest_two(trained_run):
    result = trained_run.result  # 2 epochs
    folders = sorted(p.name for p in (result.run_dir / "checkpoint").iterdir())
    assert folders == ["train-epoch-0001", "train-epoch-0002"]  # the latest and the one before
    state = json.loads((result.run_dir / "checkpoint" / "train-epoch-0002" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2
    assert state["config"]["backbone"] == SMALL_BACKBONE


def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(straight, tmp_path, plugin):
    image_folder, straight = straight
    killed = tmp_path / "killed"
    env = {**os.environ, "CLF_TEST_EPOCH_SLEEP": "0.5", "COLUMNS": "400"}
    proc = subprocess.Popen([sys.executable, "-m", "clf.cli", *_args(image_folder, killed, plugin)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint" / "train-epoch-0002").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = checkpoint.latest(killed, "train")
    assert 2 <= done.epoch < EPOCHS and not (killed / "labels.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "clf.cli", "run", "--resume", str(killed)],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Resuming {killed} after epoch {done.epoch} of {EPOCHS}" in resumed.stdout
    assert (killed / "labels.json").is_file() and (killed / "model.h5").is_file()
    _assert_same_run(straight, killed)


def test_ctrl_c_saves_exits_130_and_resumes(straight, tmp_path, plugin, monkeypatch):
    image_folder, straight = straight
    out = tmp_path / "stopped"
    monkeypatch.setenv("CLF_TEST_INTERRUPT_AT", "2")
    res = runner.invoke(app, _args(image_folder, out, plugin))
    assert res.exit_code == 130, res.output
    assert "Interrupted" in res.output and f"clf run --resume {out}" in res.output
    assert checkpoint.latest(out, "train").epoch == 2
    monkeypatch.delenv("CLF_TEST_INTERRUPT_AT")
    res = runner.invoke(app, ["run", "--resume", str(out)])
    assert res.exit_code == 0, res.output
    _assert_same_run(straight, out)


def test_resume_errors_are_clear(tmp_path):
    res = runner.invoke(app, ["run", "--resume", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such run folder" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["run", "--resume", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no complete checkpoint" in res.output


def test_a_half_written_checkpoint_is_ignored(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")  # 2 epochs
    root = run_dir / "checkpoint"
    half = root / ".train-epoch-0003.tmp-999"
    half.mkdir()
    (half / "weights.npz").write_bytes(b"partial")
    broken = root / "train-epoch-0004"
    broken.mkdir()
    (broken / "state.json").write_text("{")  # a folder without a complete state never counts
    assert checkpoint.latest(run_dir).epoch == 2


def _said(res) -> str:
    return " ".join(res.output.split())  # the terminal wraps long messages


def test_resume_refuses_flags_that_differ_from_the_recorded_run(trained_run, tmp_path):
    import clf
    from clf.errors import ConfigError

    run_dir = copy_run(trained_run, tmp_path / "run")
    res = runner.invoke(app, ["run", "--resume", str(run_dir), "--backbone", "vgg16", "--epochs", "3",
                              "--data", str(tmp_path / "other"), "--seed", "42"])  # the seed as recorded
    said = _said(res)
    assert res.exit_code == 2, res.output
    assert "--backbone vgg16 was given (recorded: " + SMALL_BACKBONE + ")" in said
    assert "--epochs 3 was given (recorded: 2)" in said and "--data " in said and "--seed" not in said
    assert "config.toml" in said and "Traceback" not in said
    with pytest.raises(ConfigError, match=r"--epochs 3 was given \(recorded: 2\)"):
        clf.resume(run_dir, epochs=3)
    res = runner.invoke(app, ["run", "--resume", str(run_dir), "--config", str(run_dir / "config.toml")])
    assert res.exit_code == 2 and "Drop --config" in _said(res)


def test_resume_refuses_changed_data(trained_run, tmp_path):
    from conftest import make_image

    run_dir = copy_run(trained_run, tmp_path / "run")
    data = Path(shutil.copytree(trained_run.data, tmp_path / "data"))
    for state in (run_dir / "checkpoint").glob("*/state.json"):  # the run as if trained on this copy
        saved = json.loads(state.read_text())
        saved["config"]["data"] = str(data)
        state.write_text(json.dumps(saved))
    make_folder(data, classes=("dog",), per_class=6, seed=5)
    # --epochs 2 and --data equal the recorded values: accepted; the data check refuses.
    res = runner.invoke(app, ["run", "--resume", str(run_dir), "--epochs", "2", "--data", str(data)])
    said = _said(res)
    assert res.exit_code == 1, res.output
    assert "changed since epoch 2 was saved (class 'dog' added" in said and "Traceback" not in said
    assert f"clf run --config '{run_dir / 'config.toml'}' --output NEW_RUN_FOLDER" in said
    shutil.rmtree(data / "dog")
    photo = sorted((data / "ant").glob("*.jpg"))[0]
    make_image(photo, 1, np.random.default_rng(99))  # as many images, one of them another photo
    res = runner.invoke(app, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 1 and "some files differ in name or content" in _said(res), res.output
