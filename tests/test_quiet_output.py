"""TensorFlow's log noise stays out of every command's output; --verbose (CLF_DEBUG=1) shows
it. The real CLI in subprocesses: the noise comes from TensorFlow's import and native code,
which an in-process runner never sees."""

import os
import subprocess
import sys

from conftest import SMALL_BACKBONE, SMALL_SIZE

# One marker per kind of line TensorFlow, Keras and TFLite wrote on every command.
NOISE = ("absl::InitializeLog", "oneDNN", "XNNPACK", "legacy", "trackable_obj", "WARNING:absl",
         "cpu_feature_guard", "I0000", "W0000")


def clf(*args, env_extra=None, timeout=600):
    # The user's environment: none of the variables that would quiet TensorFlow by themselves.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CLF_DEBUG")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "clf.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def noise(done) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if any(n in line for n in NOISE)]


def test_run_and_predict_print_no_tensorflow_noise_and_verbose_shows_it(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    # h5 (the legacy-HDF5 warning) and tflite (trackable_obj at conversion, XNNPACK when the
    # round-trip check opens it): every source of noise in one run.
    done = clf("run", "--backbone", SMALL_BACKBONE, "--data", str(image_folder), "--weights", "none",
               "--image-size", str(SMALL_SIZE), "--epochs", "1", "--export", "h5,tflite",
               "--output", str(run_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert noise(done) == []
    assert "verified tflite" in done.stdout and done.stderr == ""

    # The run opened the .tflite to verify it (XNNPACK's line); predict shows what was hidden.
    loud = clf("--verbose", "predict", str(run_dir / "model.tflite"), str(image_folder / "ant"))
    assert loud.returncode == 0, loud.stderr
    assert any("XNNPACK" in line for line in noise(loud)), loud.stderr


def test_clf_debug_is_what_verbose_sets(monkeypatch):
    from clf import logs

    monkeypatch.delenv("CLF_DEBUG", raising=False)
    assert not logs.verbose()
    monkeypatch.setenv("CLF_DEBUG", "1")
    assert logs.verbose()
    monkeypatch.delenv("CLF_DEBUG")
    logs.set_verbose()
    assert logs.verbose() and os.environ["CLF_DEBUG"] == "1"
    monkeypatch.delenv("CLF_DEBUG")


def test_a_failing_silenced_block_still_shows_what_it_wrote(capfd):
    from clf.logs import native_stderr_silenced

    with native_stderr_silenced():
        os.write(2, b"hidden\n")
    try:
        with native_stderr_silenced():
            os.write(2, b"native error detail\n")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    err = capfd.readouterr().err
    assert "hidden" not in err and "native error detail" in err


def test_predict_names_a_truncated_jpeg_and_libjpeg_stays_quiet(trained_run, tmp_path):
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, "JPEG")
    half = tmp_path / "half.jpg"
    half.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    done = clf("predict", str(trained_run.run_dir), str(half), env_extra={"COLUMNS": "300"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "half.jpg: truncated image (image file is truncated" in done.stderr
    assert "Premature end of JPEG data" not in done.stdout + done.stderr  # libjpeg's native error line
    assert noise(done) == []


def test_decoding_hides_libjpeg_but_not_what_the_caller_writes_between_batches(tmp_path):
    # Decoder.files silences native stderr while it iterates; the caller's own Python output
    # between batches (a progress bar, an error message) must still reach the terminal.
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "a_half.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    for name in ("b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(buf.getvalue())
    script = (
        "import sys; from pathlib import Path; from clf.infer.decode import Decoder\n"
        f"files = sorted(Path({str(tmp_path)!r}).glob('*.jpg'))\n"
        "for indices, batch in Decoder((32, 32)).files(files, batch_size=1):\n"
        "    print('between', indices, file=sys.stderr, flush=True)\n"
        "print('after', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith(("between", "after"))]
    assert lines == ["between [1]", "between [2]", "after"], done.stderr
    assert "Premature end of JPEG data" not in done.stderr  # libjpeg's line, from the half file
