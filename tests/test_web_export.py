"""``--export web``: a static folder (index.html, model.onnx, ONNX Runtime Web's CPU files) that
classifies photos in the browser. Checked in headless Chromium from a static server: the page's
outputs equal clf predict's, it loads nothing from outside its folder, picked photos show bars
and the unknown verdict. Needs the onnxruntime-web npm package (.ci/run installs it)."""

import base64
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import clf
from conftest import copy_run

from clf.plugins import web_exporter as web

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_missing_runtime_fails_before_anything_runs(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv(web.ENV_PACKAGE, str(tmp_path / "nowhere"))
    run_dir = copy_run(trained_run, tmp_path / "run")
    with pytest.raises(clf.ConfigError, match="npm install onnxruntime-web"):
        clf.export(run_dir, "web")
    assert not (run_dir / web.FOLDER).exists()


def test_page_config_escapes_closing_tags():
    page = web.page({"class_names": ["a</script><b>", "b"], "input_size": [32, 32]}, "1.0")
    assert "a</script>" not in page
    marker = '<script id="clf-config" type="application/json">'
    config = page.split(marker)[1].split("</script>")[0]
    assert json.loads(config)["class_names"][0] == "a</script><b>"


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    if web.runtime_package() is None:
        pytest.skip(f"onnxruntime-web is absent ({web.missing_runtime()}); .ci/run installs it")
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    run_dir = copy_run(trained_run, tmp_path_factory.mktemp("web") / "run")
    clf.export(run_dir, "web")
    return run_dir


@pytest.fixture(scope="module")
def reference(exported, trained_run):
    """Six of the run's photos and clf predict's answers for them (the run's Keras model)."""
    files = clf.collect_images(trained_run.data)[:6]
    return files, clf.predict_files(clf.load_predictor(exported, fmt="h5"), files)


@pytest.fixture(scope="module")
def served(exported):
    """The web folder on a static HTTP server: its index.html URL."""
    folder = exported / web.FOLDER

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


def test_folder_holds_the_page_the_model_and_the_runtime(exported):
    folder = exported / web.FOLDER
    assert {p.name for p in folder.iterdir()} == {"index.html", "model.onnx", "THIRD_PARTY_NOTICES.txt",
                                                 *web.RUNTIME_FILES}
    labels = json.loads((exported / "labels.json").read_text())
    assert labels["artifacts"]["web"] == [web.FOLDER] and labels["verification"]["results"]["web"]["passed"]
    assert "MIT License" in (folder / "THIRD_PARTY_NOTICES.txt").read_text()
    html = (folder / "index.html").read_text()
    assert "http" not in html.replace("http.server", "").replace("http://localhost", "")  # no CDN, no link out


def classify_in_page(page, files):
    script = ("async b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));"
              " return await clf.classify(new Blob([bytes], {type: 'image/jpeg'})); }")
    return np.array([page.evaluate(script, base64.b64encode(Path(f).read_bytes()).decode()) for f in files])


def test_page_outputs_equal_clf_predict_and_load_only_its_folder(reference, served, browser):
    files, predictions = reference
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(served)
    page.wait_for_function("window.clf !== undefined")
    page.evaluate("clf.session.then(() => true)")
    got = classify_in_page(page, files)
    k = len(predictions[0].probabilities)
    assert np.abs(got[:, :k] - np.array([p.probabilities for p in predictions])).max() <= 1e-4
    if predictions[0].known_score is not None:
        assert np.abs(got[:, k] - np.array([p.known_score for p in predictions])).max() <= 1e-4
    assert all(r.startswith(served) for r in requests), requests
    assert not errors, errors
    page.close()


def test_picked_photos_show_bars_and_the_verdict(reference, served, browser):
    files, predictions = reference[0][:2], reference[1][:2]
    page = browser.new_page()
    page.goto(served)
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')")
    page.set_input_files("#pick", [str(f) for f in files])
    page.wait_for_function("document.querySelectorAll('.card').length === 2")
    verdicts = page.locator(".verdict").all_inner_texts()[::-1]  # newest first
    for verdict, prediction, f in zip(verdicts, predictions, files):
        expected = "unknown" if prediction.unknown else prediction.top()[0][0]
        assert verdict.startswith(f"{Path(f).name}: {expected}")
    assert page.locator(".card").first.locator(".bar").count() == min(5, len(predictions[0].probabilities))
    page.close()


def test_page_opened_from_a_file_says_to_serve_the_folder(exported, browser):
    page = browser.new_page()
    page.goto((exported / web.FOLDER / "index.html").as_uri())
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "serve this folder" in page.inner_text("#status")
    page.close()
