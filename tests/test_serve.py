"""``clf serve``: real server processes on free loopback ports, a real HTTP client, a real
browser; the micro-batcher on its own; the SavedModel contract TF Serving relies on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import clf
from clf.cli import app
from clf.serve import MicroBatcher, QueueFull
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder, make_image

httpx = pytest.importorskip("httpx")
runner = CliRunner()
CLASSES = ["ant", "bee", "cat"]
START_TIMEOUT = 120  # s: importing TensorFlow and loading the model on two shared cores
# After a graceful shutdown uvicorn re-raises the SIGTERM it caught, so the process ends as
# killed by it (what a supervisor expects); 0 if it ended on its own.
STOPPED = (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small run exported as keras, savedmodel and tflite (trained once for the module)."""
    root = tmp_path_factory.mktemp("serve")
    data = make_folder(root / "data", per_class=8)
    result = clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=1,
                                   batch_size=4, image_size=SMALL_SIZE, output=str(root / "run"),
                                   augment=False, cache=False, verify=False,
                                   export="keras,savedmodel,tflite"))
    return result.run_dir, data


@pytest.fixture(scope="module")
def keras_predictor(trained):
    """The run's first artifact (model.keras) opened in this process, as clf predict opens it."""
    return clf.load_predictor(trained[0])


class Server:
    """``clf serve`` as a child process on a free loopback port."""

    def __init__(self, run_dir: Path, log: Path, *args: str):
        self.log = log
        # The free port is released just before the server binds it, so another process
        # (a parallel test worker) can take it first: then start again on another one.
        for _ in range(3):
            if self._start(run_dir, args):
                return
        raise AssertionError(f"clf serve found no free port in 3 attempts:\n{log.read_text()}")

    def _start(self, run_dir: Path, args) -> bool:
        """True once the server answers; False if its port was taken before it bound it."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        log = self.log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clf.cli", "serve", str(run_dir), "--port", str(self.port), *args],
            stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                if "address already in use" in log.read_text().lower():
                    return False
                raise AssertionError(f"clf serve exited with {self.proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200 and self.proc.poll() is None:
                    return True  # (and not another process's server on that port)
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"clf serve did not answer within {START_TIMEOUT} s:\n{log.read_text()}")
            time.sleep(0.25)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """The default format (keras), small limits to test them, a 50 ms window so that a
    burst of requests surely shares model calls. The backbone in TensorFlow, as in the
    clf predict it is compared with (auto would use a LiteRT copy that another test's run
    stored in the session's cache, agreeing only to 1e-5)."""
    run_dir, _ = trained
    srv = Server(run_dir, tmp_path_factory.mktemp("serve-log") / "server.log",
                 "--max-upload-mb", "0.25", "--max-pixels", "1000000", "--max-images", "4",
                 "--batch-window-ms", "50", "--runtime", "tensorflow")
    yield srv
    assert srv.stop() in STOPPED, srv.log.read_text()


def _jpeg(tmp_path, name="photo.jpg", label=1, size=40, seed=5) -> Path:
    path = tmp_path / name
    make_image(path, label, np.random.default_rng(seed), size=size)
    return path


def _post_file(url, path: Path, **params):
    with path.open("rb") as fh:
        return httpx.post(url + "/predict", files={"file": (path.name, fh, "image/jpeg")}, params=params, timeout=30)


def test_prediction_is_clf_predicts_to_the_last_digit(server, trained, keras_predictor, tmp_path):
    run_dir, _ = trained
    photo = _jpeg(tmp_path)
    res = _post_file(server.url, photo)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["class_names"] == CLASSES
    [pred] = body["predictions"]
    assert pred["name"] == "photo.jpg" and len(pred["top"]) == 3
    assert pred["class"] == pred["top"][0]["class"] and pred["probability"] == pred["top"][0]["probability"]
    assert abs(sum(pred["probabilities"]) - 1) < 1e-5
    # `clf predict --json` on the same file: identical numbers, not merely close ones.
    cli = runner.invoke(app, ["predict", str(run_dir), str(photo), "--json", "--top-k", "3", "--runtime", "tensorflow"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)[0]["top"] == pred["top"]
    [api] = clf.predict_files(keras_predictor, [photo])
    assert api.probabilities == pred["probabilities"]
    # The model's known score (issue 27) and its decision, the same everywhere too.
    assert json.loads(cli.stdout)[0]["known_score"] == pred["known_score"] == api.known_score
    assert json.loads(cli.stdout)[0]["unknown"] is pred["unknown"] is api.unknown
    # Raw bytes with an image content type: the same answer, named by ?name=.
    raw = httpx.post(server.url + "/predict", content=photo.read_bytes(), params={"name": "raw.jpg", "top_k": 1},
                     headers={"Content-Type": "image/jpeg"}, timeout=30).json()["predictions"][0]
    assert raw["name"] == "raw.jpg" and raw["probabilities"] == pred["probabilities"] and len(raw["top"]) == 1


def test_many_images_in_one_request_come_back_in_order(server, keras_predictor, tmp_path):
    photos = [_jpeg(tmp_path, f"p{i}.jpg", label=i, seed=i) for i in range(3)]
    files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    res = httpx.post(server.url + "/predict", files=files, params={"top_k": 2}, timeout=30)
    assert res.status_code == 200, res.text
    preds = res.json()["predictions"]
    assert [p["name"] for p in preds] == ["p0.jpg", "p1.jpg", "p2.jpg"] and all(len(p["top"]) == 2 for p in preds)
    expected = clf.predict_files(keras_predictor, photos)  # one batch of three, like the server's
    for got, want in zip(preds, expected):
        np.testing.assert_allclose(got["probabilities"], want.probabilities, atol=1e-6)


def test_metadata_health_docs_and_a_page_without_outside_links(server, trained):
    run_dir, _ = trained
    meta = httpx.get(server.url + "/metadata").json()
    labels = json.loads((run_dir / "labels.json").read_text())
    assert meta["class_names"] == CLASSES and meta["backbone"] == SMALL_BACKBONE
    assert meta["input_size"] == [SMALL_SIZE, SMALL_SIZE] and meta["resize"] == labels["resize"]
    assert meta["preprocessing"] == labels["preprocessing"] and labels["preprocessing"]["inside_model"] is True
    assert meta["artifact"] == {"format": "keras", "file": "model.keras", "runtime": "keras", "quantization": "none"}
    assert meta["clf_version"] == clf.__version__ and meta["limits"]["max_images"] == 4
    assert meta["unknown"]["applied"] is True and meta["unknown"]["output"] == "known_score"
    assert {k: meta["unknown"][k] for k in ("threshold", "score")} == {k: labels["unknown"][k] for k in ("threshold", "score")}
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["waiting_images"] == 0
    spec = httpx.get(server.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.") and set(spec["paths"]) >= {"/predict", "/metadata", "/health"}
    assert {"413", "415", "422", "503"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    assert "POST /predict" in httpx.get(server.url + "/docs").text
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="files"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing fetched from outside


def _bomb_png() -> bytes:
    """4000 x 4000 pixels in a few KB: a one-bit PNG of zeros."""
    buf = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_requests_get_a_json_error_naming_the_problem(server, tmp_path):
    photo = _jpeg(tmp_path, size=200)
    data = photo.read_bytes()
    cases = [  # (files or raw bytes, content type, expected status, words in the error)
        ({"file": ("notes.txt", b"just some text", "text/plain")}, None, 415, ["notes.txt", "not an image"]),
        ({"file": ("half.jpg", data[: len(data) // 2], "image/jpeg")}, None, 422, ["half.jpg", "truncated"]),
        ({"file": ("stub.jpg", data[:40], "image/jpeg")}, None, 422, ["stub.jpg"]),
        ({"file": ("empty.jpg", b"", "image/jpeg")}, None, 400, ["empty.jpg", "0 bytes"]),
        ({"file": ("bomb.png", _bomb_png(), "image/png")}, None, 413, ["bomb.png", "4000x4000", "--max-pixels"]),
        ({"file": ("photo.webp", _webp(), "image/webp")}, None, 415, ["WEBP", "JPEG, PNG, BMP or GIF"]),
        (b'{"url": "http://example.com/cat.jpg"}', "application/json", 415, ["never fetches"]),
        (b"x" * 300_000, "image/jpeg", 413, ["limit", "--max-upload-mb"]),
        ([("file", (f"{i}.jpg", data, "image/jpeg")) for i in range(5)], None, 413, ["Too many files", "--max-images"]),
        ({"note": (None, "hello")}, None, 400, ["no file"]),
        (b"--x\r\n", "multipart/form-data", 400, ["multipart", "boundary"]),
    ]
    for payload, kind, status, words in cases:
        if kind is None:
            res = httpx.post(server.url + "/predict", files=payload, timeout=30)
        else:
            res = httpx.post(server.url + "/predict", content=payload, headers={"Content-Type": kind}, timeout=30)
        assert res.status_code == status, (words, res.text)
        body = res.json()
        assert body["status"] == status and all(w in body["error"] for w in words), (words, body)
    # A body without Content-Length (chunked) is cut off at the limit while it is read.
    chunked = httpx.post(server.url + "/predict", content=(b"x" * 65536 for _ in range(8)),
                         headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert chunked.status_code == 413 and "passed" in chunked.json()["error"]
    assert httpx.post(server.url + "/predict", params={"top_k": "0"}, content=data,
                      headers={"Content-Type": "image/jpeg"}).status_code == 400
    assert httpx.get(server.url + "/predict").json()["status"] == 405
    assert httpx.get(server.url + "/etc/passwd").json()["status"] == 404
    # None of that hurt the server.
    assert _post_file(server.url, photo).status_code == 200


def _webp() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, format="WEBP")
    return buf.getvalue()


def test_concurrent_requests_share_model_calls(server, tmp_path):
    photo = _jpeg(tmp_path).read_bytes()
    before = httpx.get(server.url + "/health").json()
    answers = []

    def ask():
        answers.append(httpx.post(server.url + "/predict", content=photo, timeout=60,
                                  headers={"Content-Type": "image/jpeg"}).status_code)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = httpx.get(server.url + "/health").json()
    assert answers == [200] * 12
    assert after["images"] - before["images"] == 12
    assert after["batches"] - before["batches"] < 12 and after["largest_batch"] > 1


def _slow_body(data: bytes, pause: float):
    """A chunked upload that stalls halfway: the request stays in flight meanwhile."""
    yield data[: len(data) // 2]
    time.sleep(pause)
    yield data[len(data) // 2:]


def test_full_queue_is_503_with_retry_after_and_sigterm_lets_in_flight_requests_finish(trained, tmp_path):
    run_dir, _ = trained
    photo = _jpeg(tmp_path).read_bytes()
    srv = Server(run_dir, tmp_path / "server.log", "--max-queue", "1")  # one request at a time
    try:
        answers = []

        def ask(pause=1.0):
            answers.append(httpx.post(srv.url + "/predict", content=_slow_body(photo, pause), timeout=60,
                                      headers={"Content-Type": "image/jpeg"}))

        threads = [threading.Thread(target=ask) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = sorted(r.status_code for r in answers)
        assert len(codes) == 6 and 200 in codes and 503 in codes, codes
        busy = next(r for r in answers if r.status_code == 503)
        assert int(busy.headers["Retry-After"]) >= 1 and "busy" in busy.json()["error"]

        # Graceful shutdown: a request still uploading when SIGTERM arrives gets its answer.
        late = threading.Thread(target=ask, args=(3.0,))
        late.start()
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/health").json()["requests_in_progress"] == 0:
            assert time.monotonic() < deadline, "the request never reached the server"
            time.sleep(0.02)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) in STOPPED, srv.log.read_text()
        assert "Traceback" not in srv.log.read_text()
        late.join(30)
        assert len(answers) == 7 and answers[-1].status_code == 200, answers[-1].text
        assert answers[-1].json()["predictions"][0]["class"] in CLASSES
        with pytest.raises(httpx.TransportError):
            httpx.get(srv.url + "/health", timeout=2)
    finally:
        srv.stop()


@contextlib.contextmanager
def serving_in_thread(app):
    """uvicorn serving ``app`` from a thread of this process, on a free loopback port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.parametrize("fmt,runtime", [("savedmodel", "tensorflow"), ("tflite", "tensorflow"), ("keras", "tflite")])
def test_other_formats_serve_the_same_predictions(trained, keras_predictor, tmp_path, fmt, runtime):
    """The app on each artifact format, and on the Keras model with its backbone in LiteRT
    (clf serve --runtime tflite); served from a thread here, to skip a process start."""
    from clf.serve import ServeSettings, create_app, warm_up

    run_dir, _ = trained
    photo = _jpeg(tmp_path).read_bytes()
    expected = keras_predictor.predict_batch(keras_predictor.decode(photo)[None])[0]
    predictor = clf.load_predictor(run_dir, fmt=fmt, runtime=runtime)
    settings = ServeSettings(max_batch=8)
    warm_up(predictor, settings)
    with serving_in_thread(create_app(predictor, settings)) as url:
        assert httpx.get(url + "/metadata").json()["artifact"]["format"] == fmt
        res = httpx.post(url + "/predict", content=photo, headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert res.status_code == 200, res.text
    served = res.json()["predictions"][0]
    # The model outputs the class probabilities, then its known score (labels.json "unknown").
    np.testing.assert_allclose(served["probabilities"], expected[:len(CLASSES)], atol=1e-5)
    np.testing.assert_allclose(served["known_score"], expected[len(CLASSES)], atol=1e-5)
    if runtime == "tflite":
        assert "backbone in litert" in predictor.runtime or "backbone in tflite" in predictor.runtime, predictor.runtime


def test_serve_command_errors_are_one_clear_line(trained, tmp_path):
    run_dir, _ = trained
    res = runner.invoke(app, ["serve", str(run_dir), "--format", "onnx"])
    assert res.exit_code == 1 and "no 'onnx' artifact" in res.output and "keras, savedmodel, tflite" in res.output
    res = runner.invoke(app, ["serve", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "does not exist" in res.output  # a path that is not there: exit 2
    res = runner.invoke(app, ["serve", str(run_dir), "--format", "jpeg"])
    assert res.exit_code == 2 and "Unknown exporter 'jpeg'" in res.output
    res = runner.invoke(app, ["serve", str(run_dir / "model.keras"), "--format", "tflite"])
    assert res.exit_code == 1 and "is a 'keras' artifact, not 'tflite'" in res.output
    assert "Traceback" not in res.output


def test_savedmodel_serving_default_is_the_tf_serving_contract(trained, keras_predictor, tmp_path):
    """What docs/export.md tells TF Serving users: signature serving_default, input 'image'
    float32 [batch, h, w, 3] RGB 0-255 at any h, w (the decoded photo; signature 'fixed':
    at the input size), output 'output_0' float32 [batch, classes + 1] (the probabilities, then
    the known score), the class names and the known-score rule in assets.extra/labels.json inside
    the folder."""
    import tensorflow as tf

    run_dir, _ = trained
    loaded = tf.saved_model.load(str(run_dir / "saved_model"))
    assert "serving_default" in loaded.signatures
    fn = loaded.signatures["serving_default"]
    args, inputs = fn.structured_input_signature
    assert args == () and list(inputs) == ["image"]
    assert inputs["image"].dtype == tf.float32 and inputs["image"].shape.as_list() == [None, None, None, 3]
    fixed = loaded.signatures["fixed"]
    assert fixed.structured_input_signature[1]["image"].shape.as_list() == [None, SMALL_SIZE, SMALL_SIZE, 3]
    outputs = fn.structured_outputs
    assert list(outputs) == ["output_0"]
    assert outputs["output_0"].dtype == tf.float32 and outputs["output_0"].shape.as_list() == [None, len(CLASSES) + 1]
    labels = json.loads((run_dir / "saved_model" / "assets.extra" / "labels.json").read_text())
    assert labels["class_names"] == CLASSES and labels["input_size"] == [SMALL_SIZE, SMALL_SIZE]
    assert labels["unknown"]["column"] == len(CLASSES) and labels["unknown"]["output"] == "known_score"
    # Fed the way docs/export.md says (the decoded photo as it is), it gives the server's numbers;
    # so does the fixed signature fed clf's decoded, cropped, resized pixels.
    from PIL import Image

    image = keras_predictor.decode(_jpeg(tmp_path).read_bytes())
    want = keras_predictor.predict_batch(image[None])
    photo = np.asarray(Image.open(_jpeg(tmp_path)).convert("RGB"), np.float32)[None]
    # The known score moves more with the in-model resize than the probabilities: clf verify's
    # tolerance for photos passed raw (1e-3).
    raw = fn(image=tf.constant(photo))["output_0"].numpy()
    np.testing.assert_allclose(raw[:, :-1], want[:, :-1], atol=1e-5)
    np.testing.assert_allclose(raw[:, -1], want[:, -1], atol=1e-3)
    np.testing.assert_allclose(fixed(image=tf.constant(image[None]))["output_0"].numpy(), want, atol=1e-5)


def test_micro_batcher_gathers_bounds_and_answers_everyone():
    calls = []

    def predict(images):  # row i -> [mean of image i]: each answer shows whose image it was
        calls.append(len(images))
        return images.reshape(len(images), -1).mean(axis=1, keepdims=True)

    async def scenario():
        b = MicroBatcher(predict, max_batch=4, window_ms=200, max_queue=9)
        await b.start()
        items = [np.full((1, 2, 2, 3), i, np.float32) for i in range(9)] + [np.full((2, 2, 2, 3), 9, np.float32)]
        results = await asyncio.gather(*(b.predict(x) for x in items), return_exceptions=True)
        await b.stop()
        return b, results

    b, results = asyncio.run(scenario())
    assert [r[0, 0] for r in results[:9]] == list(range(9))  # everyone got their own answer
    assert isinstance(results[9], QueueFull) and results[9].limit == 9  # 9 + 2 > max_queue
    assert calls == [4, 4, 1] and b.stats.batches == 3 and b.stats.images == 9

    async def company():
        """A request on its way (incoming) is waited for; a lone one is not held back."""
        calls.clear()
        b = MicroBatcher(predict, max_batch=8, window_ms=3000)
        await b.start()

        async def late(x):
            with b.incoming():
                await asyncio.sleep(0.1)  # reading and decoding
            return await b.predict(x)

        together = await asyncio.gather(b.predict(np.zeros((1, 2, 2, 3), np.float32)), late(np.ones((1, 2, 2, 3), np.float32)))
        start = time.monotonic()
        alone = await b.predict(np.full((1, 2, 2, 3), 7, np.float32))
        waited = time.monotonic() - start
        await b.stop()
        return together, alone, waited

    together, alone, waited = asyncio.run(company())
    assert calls == [2, 1] and [t[0, 0] for t in together] == [0, 1] and alone[0, 0] == 7
    assert waited < 1.5  # not the 3 s window

    def broken(images):
        raise RuntimeError("model exploded")

    async def failing():
        b = MicroBatcher(broken, max_batch=4, window_ms=20)
        await b.start()
        out = await asyncio.gather(*(b.predict(np.zeros((1, 2, 2, 3), np.float32)) for _ in range(3)),
                                   return_exceptions=True)
        await b.stop()
        return out

    assert [str(e) for e in asyncio.run(failing())] == ["model exploded"] * 3


def test_page_in_headless_chromium_shows_the_predicted_class(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's)")
    photo = _jpeg(tmp_path, "bee.jpg")
    expected = _post_file(server.url, photo).json()["predictions"][0]
    shot = tmp_path / "serve-page.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            problems = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
            page.set_input_files("#files", str(photo))
            card = page.locator(".card[data-state=done]", has=page.locator(".name", has_text="bee.jpg"))
            card.wait_for(timeout=30_000)
            assert card.locator(".label").inner_text() == expected["class"]
            bars = card.locator(".bar")
            assert bars.count() == 3 and bars.first.locator(".cls").inner_text() == expected["class"]
            assert card.get_attribute("data-unknown") == ("true" if expected["unknown"] else "false")
            # A photo unlike the training images: "unknown", the class it would be beside, set apart.
            white = tmp_path / "white.jpg"
            Image.new("RGB", (40, 40), (255, 255, 255)).save(white)
            odd = _post_file(server.url, white).json()["predictions"][0]
            assert odd["unknown"] is True and not expected["unknown"]
            page.set_input_files("#files", str(white))
            unknown = page.locator(".card[data-state=done]", has=page.locator(".name", has_text="white.jpg"))
            unknown.wait_for(timeout=30_000)
            assert unknown.get_attribute("data-unknown") == "true"
            assert unknown.locator(".label").inner_text() == f"unknown (would be: {odd['class']})"
            assert f"known score {odd['known_score']:.3f}" in unknown.locator(".known").inner_text()
            assert unknown.evaluate("e => getComputedStyle(e).borderColor") != card.evaluate(
                "e => getComputedStyle(e).borderColor")
            page.screenshot(path=str(shot), full_page=True)
            assert problems == []
            # A file that is no image shows the server's message on its card.
            (tmp_path / "notes.txt").write_text("not a photo")
            page.set_input_files("#files", str(tmp_path / "notes.txt"))
            page.locator(".card[data-state=error]").wait_for(timeout=30_000)
            assert "not an image" in page.locator(".card[data-state=error] .label").inner_text()
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def _png(size: int, mode: str = "1") -> bytes:
    """A square PNG of zeros: ``size`` x ``size`` pixels in a few KB."""
    buf = io.BytesIO()
    Image.new(mode, (size, size)).save(buf, format="PNG")
    return buf.getvalue()


def _files(data: bytes, n: int) -> list:
    return [("file", (f"{i}.png", data, "image/png")) for i in range(n)]


def test_pixels_are_bounded_per_request_decoding_is_timed_and_requests_take_turns(keras_predictor, tmp_path):
    """A request's images together are checked against --max-request-pixels from their headers,
    before any is decoded; --request-timeout covers decoding; a request of many large images
    holds one decoding thread at a time, so a small request sent meanwhile is not put behind
    all of them; after shutdown begins, a new request is a JSON 503."""
    from clf.serve import ServeSettings, create_app, warm_up

    small = _jpeg(tmp_path).read_bytes()
    warm_up(keras_predictor, ServeSettings())
    with serving_in_thread(create_app(keras_predictor, ServeSettings())) as url:
        start = time.monotonic()  # 32 PNGs of 7000 x 7000: 1.6 billion pixels in 200 KB
        res = httpx.post(url + "/predict", files=_files(_png(7000), 32), timeout=120)
        took = time.monotonic() - start
        assert res.status_code == 413 and "--max-request-pixels" in res.json()["error"], res.text
        assert took < 5, took  # headers only: decoding them takes tens of seconds

    big = _files(_png(7000), 16)  # 49 million pixels each: seconds of decoding in all
    with serving_in_thread(create_app(keras_predictor, ServeSettings(max_request_pixels=10**10))) as url:
        done = {}

        def large():
            start = time.monotonic()
            done["large"] = (httpx.post(url + "/predict", files=big, timeout=120).status_code,
                             time.monotonic() - start, time.monotonic())

        thread = threading.Thread(target=large)
        thread.start()
        deadline = time.monotonic() + 30
        while httpx.get(url + "/health").json()["requests_in_progress"] == 0:
            assert time.monotonic() < deadline, "the large request never reached the server"
            time.sleep(0.02)
        time.sleep(0.3)  # its decoding under way
        start = time.monotonic()
        res = httpx.post(url + "/predict", content=small, headers={"Content-Type": "image/jpeg"}, timeout=120)
        small_took, small_done = time.monotonic() - start, time.monotonic()
        thread.join(120)
        assert res.status_code == 200 and done["large"][0] == 200, (res.text, done)
        # It waited for one of the large request's images at most, not for all of them.
        assert small_done < done["large"][2] and small_took < done["large"][1] / 2, (small_took, done)

    app = create_app(keras_predictor, ServeSettings(max_request_pixels=10**10, request_timeout=1.0))
    with serving_in_thread(app) as url:
        start = time.monotonic()
        res = httpx.post(url + "/predict", files=big + big, timeout=120)
        took = time.monotonic() - start
        assert res.status_code == 504 and "--request-timeout" in res.json()["error"], res.text
        assert took < 4, took  # the timeout, and the decode in progress when it came
        app.state.begin_shutdown()
        time.sleep(0.1)
        res = httpx.post(url + "/predict", content=small, headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert res.status_code == 503 and "shutting down" in res.json()["error"], res.text
        assert int(res.headers["Retry-After"]) >= 1


def _multipart(files: list) -> tuple[bytes, str]:
    """A multipart body as httpx encodes it, and its Content-Type."""
    request = httpx.Request("POST", "http://127.0.0.1/", files=files)
    return request.read(), request.headers["Content-Type"]


def test_sigterm_while_decoding_answers_every_request_in_json_without_a_traceback(trained, tmp_path):
    """SIGTERM while requests are on their way: one that can finish gets its prediction; one
    still decoding when the shutdown's grace (--request-timeout) runs out gets a JSON 503
    with Retry-After instead of uvicorn's plain-text 500; the log has no traceback."""
    run_dir, _ = trained
    srv = Server(run_dir, tmp_path / "server.log", "--request-timeout", "2", "--max-request-pixels", "2000000000",
                 "--allowed-hosts", "clf.example")
    try:
        assert httpx.get(srv.url + "/health", headers={"Host": "clf.example"}).status_code == 200
        assert httpx.get(srv.url + "/health", headers={"Host": "other.example"}).status_code == 400
        body, kind = _multipart(_files(_png(7000), 32))  # 1.6 billion pixels: seconds of decoding
        photo = _jpeg(tmp_path).read_bytes()
        answers = {}

        def ask(name, data, kind, pause):
            answers[name] = httpx.post(srv.url + "/predict", content=_slow_body(data, pause), timeout=60,
                                       headers={"Content-Type": kind})

        threads = [threading.Thread(target=ask, args=("large", body, kind, 1.2)),
                   threading.Thread(target=ask, args=("small", photo, "image/jpeg", 0.8))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/health").json()["requests_in_progress"] < 2:
            assert time.monotonic() < deadline, "the requests never reached the server"
            time.sleep(0.02)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) in STOPPED, srv.log.read_text()
        for t in threads:
            t.join(30)
        log = srv.log.read_text()
        assert "Traceback" not in log and "Exception in ASGI" not in log, log
        assert answers["small"].status_code == 200, answers["small"].text
        large = answers["large"]
        assert large.status_code == 503 and large.headers["content-type"] == "application/json", large.text
        assert "shutting down" in large.json()["error"] and int(large.headers["Retry-After"]) >= 1
    finally:
        srv.stop()


def test_top_k_and_the_host_header_are_checked(server, tmp_path):
    photo = _jpeg(tmp_path).read_bytes()
    for value in ["²", "9" * 5000, "0", "-1", " 2", "1.5"]:
        res = httpx.post(server.url + "/predict", params={"top_k": value}, content=photo,
                         headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert res.status_code == 400 and "whole number of at least 1" in res.json()["error"], (value, res.text)
        assert len(res.json()["error"]) < 300
    for value, shown in (("2", 2), ("4", 3), ("999999", 3)):  # above the classes: capped, as always
        res = httpx.post(server.url + "/predict", params={"top_k": value}, content=photo,
                         headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert res.status_code == 200 and len(res.json()["predictions"][0]["top"]) == shown, (value, res.text)
    # DNS rebinding: a page of another site that points its name at 127.0.0.1 sends that name.
    for path in ["/metadata", "/health", "/"]:
        res = httpx.get(server.url + path, headers={"Host": f"attacker.example:{server.port}"})
        assert res.status_code == 400 and "--allowed-hosts" in res.json()["error"], (path, res.text)
    res = httpx.post(server.url + "/predict", content=photo, timeout=30,
                     headers={"Content-Type": "image/jpeg", "Host": "attacker.example"})
    assert res.status_code == 400
    for host in [f"localhost:{server.port}", f"127.0.0.1:{server.port}", "LOCALHOST"]:
        assert httpx.get(server.url + "/metadata", headers={"Host": host}).status_code == 200, host


def test_serve_on_a_busy_port_is_one_line_before_the_model_loads(trained):
    run_dir, _ = trained
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        start = time.monotonic()
        res = runner.invoke(app, ["serve", str(run_dir), "--port", str(port)])
    assert res.exit_code == 2 and f"port {port}" in res.output and "in use" in res.output, res.output
    assert "serving" not in res.output and "Traceback" not in res.output
    assert time.monotonic() - start < 10  # before TensorFlow opens the model


def test_python_clients_see_the_413_of_an_oversize_upload(keras_predictor):
    """urllib (like requests) sends the whole body before it reads the answer: the server
    reads and drops the rest of a refused body, so the client sees the 413, not a reset."""
    import urllib.error
    import urllib.request

    from clf.serve import ServeSettings, create_app

    with serving_in_thread(create_app(keras_predictor, ServeSettings(max_upload_bytes=100_000))) as url:
        for body in [b"x" * 5_000_000, (b"x" * 65536 for _ in range(80))]:  # by Content-Length; chunked
            request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": "image/jpeg"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=60)
            assert refused.value.code == 413
            assert "--max-upload-mb" in json.loads(refused.value.read())["error"]
