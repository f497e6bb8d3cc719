"""The Python API as a notebook uses it: clf.run(**options) with progress, a short repr and an
HTML view of the result, result.predict on files or arrays of any size (exactly clf
predict's decoding, crop and resize), collect_images on one path, Prediction.top(k)."""

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

import clf
from clf.cli.render import PlainObserver, RichProgressObserver, progress_observer
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run through clf.run(**options, progress=True); its printed progress kept."""
    root = tmp_path_factory.mktemp("notebook-api")
    data = make_folder(root / "data", per_class=6)
    # A photo that is neither square nor the input size: 60x80, the kind a user has.
    photo = root / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photo)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = clf.run(data=str(data), backbone=SMALL_BACKBONE, weights="none", epochs=2, batch_size=4,
                         image_size=SMALL_SIZE, output=str(root / "run"), augment=False, progress=True)
    return result, data, photo, printed.getvalue()


def test_run_takes_options_by_name_and_shows_progress(trained):
    result, data, _, printed = trained
    assert result.config.backbone == SMALL_BACKBONE and result.config.epochs == 2
    # Every phase reports as it ends: features, the solved head (which names --epochs 2 as
    # unused), verification.
    assert "features: " in printed and "linear head solved" in printed and "verified h5" in printed
    assert "--epochs 2: not used by the default linear head" in printed


def test_run_options_are_checked_like_a_config(tmp_path):
    with pytest.raises(clf.ConfigError, match="did you mean 'epochs'"):
        clf.run(data="x", epoch=3)
    with pytest.raises(clf.ConfigError, match="Invalid batch_size 0"):
        clf.run(clf.RunConfig(data="x"), batch_size=0)  # options beside a RunConfig override it
    with pytest.raises(clf.ConfigError, match="keyword options"):
        clf.run("photos/")
    from clf.train.engine import configure

    merged = configure(clf.RunConfig(data="a", epochs=7), {"lr": 0.01})
    assert (merged.data, merged.epochs, merged.lr) == ("a", 7, 0.01)


def test_result_repr_is_one_short_line_and_html_shows_metrics_and_the_confusion_matrix(trained):
    result = trained[0]
    text = repr(result)
    assert len(text) < 300 and "\n" not in text, text
    assert text.startswith("RunResult(") and SMALL_BACKBONE in text and "validation_accuracy=" in text
    assert "['ant', 'bee', 'cat']" in text and "model.h5" in text
    page = result._repr_html_()
    accuracy = result.evaluation["validation"]["accuracy"]
    # metrics, per class, and the deployment table (deployment.json)
    assert page.count("<table>") == 3 and f"{accuracy:.4f}" in page and "macro F1" in page and "McNemar p" in page
    assert all(f"<td>{name}</td>" in page for name in ("ant", "bee", "cat"))
    assert '<img alt="confusion matrix"' in page and "data:image/png;base64," in page


def test_result_predict_prepares_files_and_arrays_as_clf_predict_does(trained):
    result, data, photo, _ = trained
    predictor = clf.load_predictor(result.run_dir)
    [prediction] = clf.predict_files(predictor, [photo])
    expected = np.array(prediction.probabilities)
    # The known score and its decision, as clf predict gives them (issue 27).
    np.testing.assert_allclose(result.known_scores(photo), [prediction.known_score], atol=1e-5)
    assert prediction.unknown == (prediction.known_score < result.manifest["unknown"]["threshold"])
    np.testing.assert_allclose(result.predict(photo)[0], expected, atol=1e-5)
    np.testing.assert_allclose(result.predict(str(photo))[0], expected, atol=1e-5)
    # The same pixels as an array of the photo's own size (decoded by Pillow, as clf decodes
    # JPEGs: the accurate IDCT): cropped and resized the same way.
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    assert pixels.shape == (60, 80, 3)
    np.testing.assert_allclose(result.predict(pixels)[0], expected, atol=1e-5)
    # A list of arrays of different sizes, a PIL image, a folder.
    small = np.asarray(Image.open(photo).resize((40, 30)))
    both = result.predict([pixels, Image.open(photo), small])
    assert both.shape == (3, 3) and np.allclose(both.sum(1), 1, atol=1e-4)
    assert result.predict(data / "ant").shape == (6, 3)
    # An image already at the input size goes through unchanged (crop and resize are no-ops).
    x = np.random.default_rng(0).uniform(0, 255, (4, SMALL_SIZE, SMALL_SIZE, 3)).astype(np.float32)
    # (the model outputs the probabilities, then its known score: RunResult.outputs gives both)
    np.testing.assert_allclose(result.outputs(x), result.model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_array_equal(result.predict(x), result.outputs(x)[:, :3])


def test_result_predict_names_a_bad_input(trained, tmp_path):
    result = trained[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(clf.DataError, match="broken.jpg"):
        result.predict(broken)
    with pytest.raises(clf.DataError, match=r"\[height, width, 3\]"):
        result.predict(np.zeros((20, 20, 4), np.uint8))


def test_collect_images_takes_one_path_as_str_or_path(trained, monkeypatch):
    data = trained[1]
    monkeypatch.chdir(data.parent)
    expected = sorted((data / "ant").glob("*.jpg"))
    assert [p.resolve() for p in clf.collect_images("data/ant")] == expected  # not 'd', 'a', 't', 'a'
    assert clf.collect_images(data / "ant") == expected
    assert clf.collect_images(str(data / "ant")) == expected
    assert len(clf.collect_images(["data/ant", data / "bee"])) == 12
    with pytest.raises(clf.NotFoundError, match="nope"):
        clf.collect_images("nope")


def test_prediction_top_needs_no_class_names(trained):
    result, data, _, _ = trained
    predictor = clf.load_predictor(result.run_dir)
    (p,) = clf.predict_files(predictor, clf.collect_images(data / "cat" / "cat_0.jpg"))
    top = p.top(2)
    assert [name for name, _ in top] == [predictor.class_names[i] for i in np.argsort(p.probabilities)[::-1][:2]]
    assert p.top(predictor.class_names, 2) == top == p.top(k=2)  # the older form still works
    assert len(p.top()) == 1


def test_progress_display_fits_where_it_runs(monkeypatch):
    assert isinstance(progress_observer(Console(file=io.StringIO())), PlainObserver)  # a log file
    assert isinstance(progress_observer(Console(force_terminal=True, file=io.StringIO())), RichProgressObserver)
    jupyter = Console(force_jupyter=True, file=io.StringIO())
    widgets = progress_observer(jupyter)
    import importlib.util

    has_widgets = importlib.util.find_spec("ipywidgets") is not None
    assert isinstance(widgets, RichProgressObserver) == has_widgets
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else real(name, *a))
    plain = progress_observer(jupyter)  # no ipywidgets: lines every front end shows
    assert isinstance(plain, PlainObserver) and not isinstance(plain, RichProgressObserver)


def test_a_script_using_the_api_prints_no_tensorflow_import_lines(tmp_path):
    # ... nor LiteRT's "Created TensorFlow Lite XNNPACK delegate" when extraction runs the
    # backbone in LiteRT (--runtime auto picks it on real photos; printed in notebooks once).
    code = ("import clf; clf.RunConfig(data='x'); import tensorflow, keras, numpy as np\n"
            "from clf.infer.convert import to_tflite\n"
            "from clf.infer.runners import LiteRTRunner\n"
            "i = keras.Input((4,)); m = keras.Model(i, keras.layers.Dense(2)(i))\n"
            "LiteRTRunner(to_tflite(m)).run(np.ones((3, 4), 'float32')); print('ok')")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CLF_DEBUG")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    assert "oneDNN" not in done.stderr and "absl" not in done.stderr, done.stderr
    assert "XNNPACK" not in done.stderr, done.stderr


def test_the_api_module_loads_no_cli_until_progress_bars_are_asked_for():
    code = "import sys, clf.api; print(sorted(m for m in ('typer', 'clf.cli') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
