"""The exit-code table of docs/reference/exit-codes.md, one test per row: the same code for the same kind of
mistake. 2: the command is wrong, found before anything is read or written; 1: the work ran
and the data, weights, a plugin or an artifact let it down; 130: interrupted."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_image

runner = CliRunner()
EXIT_CODES = Path(__file__).resolve().parents[1] / "docs" / "reference" / "exit-codes.md"


def documented_exit_codes() -> dict[int, str]:
    section = EXIT_CODES.read_text()
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| `(\d+)` \| (.*) \|$", section, re.M)}


def test_docs_document_every_exit_code():
    assert sorted(documented_exit_codes()) == [0, 1, 2, 130]


def base(data, out):
    return ["run", "--backbone", SMALL_BACKBONE, "--data", str(data), "--weights", "none", "--epochs", "1",
            "--image-size", str(SMALL_SIZE), "--output", str(out)]


def test_0_success():
    assert runner.invoke(app, ["backbones"]).exit_code == 0


def test_2_every_mistake_in_the_command_and_nothing_written(image_folder, tmp_path):
    out = tmp_path / "run"
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("earlier work")
    mistakes = {
        "missing --data": (["--data", str(tmp_path / "nope")], "does not exist"),
        "bad --image-size": (["--image-size", "4"], "Invalid image_size 4"),
        "image size below the backbone's": (["--image-size", "16"], "below the minimum"),
        "unknown backbone": (["--backbone", "mobilenetv2_035"], "Did you mean 'mobilenet_v2_035'"),
        "unknown exporter": (["--export", "h5,tflit"], "Did you mean 'tflite'"),
        "unknown option": (["--epoch", "3"], "No such option"),
        "missing --weights file": (["--weights", str(tmp_path / "w.h5")], "does not exist"),
        "missing --plugin file": (["--plugin", str(tmp_path / "p.py")], "does not exist"),
        "missing --plugin module": (["--plugin", "no_such_plugin_module"], "could not be imported"),
        "used --output": (["--output", str(tmp_path / "used")], "already exists"),
        "--quantize without tflite": (["--quantize", "int8"], "--quantize int8 applies to"),
    }
    for what, (args, text) in mistakes.items():
        res = runner.invoke(app, [*base(image_folder, out), *args])
        assert res.exit_code == 2, (what, res.output)
        assert text in res.output, (what, res.output)
        assert "Traceback" not in res.output and not out.exists(), what
    for args, text in ((["predict", str(tmp_path / "no-run"), str(image_folder)], "does not exist"),
                       (["evaluate", str(tmp_path / "no-run"), "--data", str(image_folder)], "does not exist"),
                       (["doctor", str(tmp_path / "nope")], "does not exist"),
                       (["run", "--config", str(tmp_path / "nope.toml")], "does not exist")):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and text in res.output, (args, res.output)


def test_1_the_work_failed(image_folder, tmp_path):
    res = runner.invoke(app, [*base(image_folder, tmp_path / "run"), "--classes", "4"])
    assert res.exit_code == 1 and "class" in res.output, res.output
    bad = tmp_path / "bad"
    for i in range(2):
        make_image(bad / "a" / f"{i}.jpg", 0, __import__("numpy").random.default_rng(i))
        make_image(bad / "b" / f"{i}.jpg", 1, __import__("numpy").random.default_rng(i + 5))
    (bad / "a" / "broken.jpg").write_bytes(b"not an image")
    assert runner.invoke(app, ["doctor", str(bad), "--strict-data"]).exit_code == 1


INTERRUPT = '''
import clf

def make(config, run_dir):
    import keras

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # what Ctrl-C raises

    return Stop()

@clf.hookimpl
def register_callbacks(register):
    register("ctrl_c", make)
'''


def test_130_interrupted(image_folder, tmp_path):
    from clf.host.manager import reset_host

    plugin = tmp_path / "ctrl_c.py"
    plugin.write_text(INTERRUPT)
    out = tmp_path / "run"
    try:
        res = runner.invoke(app, [*base(image_folder, out), "--epochs", "3", "--solver", "keras",
                                  "--plugin", str(plugin)])  # interrupted between Keras epochs
    finally:
        reset_host()  # the CLI's process-wide host keeps a --plugin loaded: no Ctrl-C for later tests
    assert res.exit_code == 130 and f"clf run --resume {out}" in res.output, res.output


def needy_exporter_host():
    """A host with an exporter whose package is not installed."""
    host = clf.PluginHost()

    class Needy:
        @clf.hookimpl
        def register_exporters(self, register):
            register("needy", lambda model, directory, metadata: [], requires=("clf_no_such_package_xyz",),
                     install="pip install 'clf[needy]'")

    host.register(Needy(), name="needy-plugin")
    return host


def test_a_missing_export_package_fails_before_data_is_read_or_a_folder_made(small_config, tmp_path):
    recorder = clf.RecordingObserver()
    config = small_config(export="h5,needy")
    with pytest.raises(clf.ConfigError) as info:
        clf.run(config, recorder, needy_exporter_host())
    assert "Exporter 'needy' needs clf_no_such_package_xyz, which is not installed" in str(info.value)
    assert "pip install 'clf[needy]'" in str(info.value) and "drop needy from --export" in str(info.value)
    assert recorder.events == [] and not Path(config.output).exists()  # no phase started, nothing written


def test_onnx_without_its_extra_fails_at_once_in_the_real_cli(image_folder, tmp_path):
    # tf2onnx made unimportable, as on a machine without the onnx extra.
    out = tmp_path / "run"
    code = ("import sys; sys.modules['tf2onnx'] = None; from clf.cli import main; "
            f"sys.argv = ['clf'] + {base(image_folder, out) + ['--export', 'h5,onnx']!r}; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Exporter 'onnx' needs tf2onnx" in done.stderr and "pip install 'clf" in done.stderr
    assert not out.exists() and "Traceback" not in done.stderr
    assert clf.PluginHost().exporters.get("onnx").install == "pip install 'clf[onnx]'"
