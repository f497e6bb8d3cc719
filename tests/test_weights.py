"""Weights offline: a mirror on a local HTTP server (127.0.0.1), hash checks, clear failures."""

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clf import PluginHost, WeightsError
from clf.cli import app
from clf.artifacts.weights import WeightsFile, capture, fetch, url_for

runner = CliRunner()
HOST = PluginHost()
MOBILENET_FILE = "tensorflow/keras-applications/mobilenet/mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("CLF_WEIGHTS_MIRROR", raising=False)
    return tmp_path / "keras" / "models"


@pytest.fixture
def mirror(tmp_path):
    """A bounded HTTP server on 127.0.0.1 serving tmp_path/www; stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def legacy_weights(path: Path, ctor: str = "MobileNet", alpha: float = 0.25, source: Path | None = None) -> None:
    """A headless Keras Applications model's weights in the legacy HDF5 layout Keras
    downloads: from ``source`` (a weights file) or, without it, seeded random weights."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(7)
    model = getattr(keras.applications, ctor)(alpha=alpha, include_top=False, weights=None, input_shape=(224, 224, 3))
    if source is not None:
        model.load_weights(str(source))
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_mirror_keeps_the_keras_path_and_file_name():
    wf = WeightsFile("a.h5", "https://storage.googleapis.com/tensorflow/keras-applications/x/a.h5")
    assert url_for(wf, "http://127.0.0.1:8000/keras/") == "http://127.0.0.1:8000/keras/tensorflow/keras-applications/x/a.h5"
    assert url_for(wf, None) == wf.origin


def test_table_matches_what_keras_would_download():
    for name in ("mobilenet_025", "mobilenet_v2_035", "vgg16"):
        bb = HOST.backbones.get(name)
        assert capture(bb.build, (bb.input_size[0], bb.input_size[1], 3)) == bb.imagenet_file, name
    assert all(bb.imagenet_file is not None for bb in HOST.backbones if bb.plugin.endswith("keras_applications"))


def test_run_gets_imagenet_weights_from_a_local_mirror(keras_home, mirror, monkeypatch, tmp_path):
    # mobilenet_050: Keras publishes no hash for it and clf pins none (mobilenet_025's file is
    # pinned, so only its original bytes would pass); a structurally right file loads.
    www, url = mirror
    served = www / "tensorflow/keras-applications/mobilenet/mobilenet_5_0_224_tf_no_top.h5"
    legacy_weights(served, alpha=0.5)
    monkeypatch.setenv("CLF_WEIGHTS_MIRROR", url)
    bb = HOST.backbones.get("mobilenet_050")
    model = bb.build((224, 224, 3), "imagenet")  # downloads from the mirror into the cache
    assert (keras_home / "mobilenet_5_0_224_tf_no_top.h5").is_file()
    assert not [p for p in keras_home.iterdir() if p.name.startswith(".tmp")]
    reference = bb.build((224, 224, 3), str(served))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.predict(x, verbose=0), atol=1e-5)
    listed = {r["backbone"]: r for r in json.loads(runner.invoke(app, ["weights", "list", "--json"]).output)}
    assert listed["mobilenet_050"]["cached"] and listed["mobilenet_050"]["bytes"] > 1_000_000
    assert not listed["vgg16"]["cached"]
    res = runner.invoke(app, ["weights", "verify", "mobilenet_050"])
    assert res.exit_code == 0 and "unchecked" in res.output  # no hash known for it


def test_fetch_checks_the_hash_and_keeps_no_bad_file(keras_home, mirror):
    www, url = mirror
    served = www / "tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    served.parent.mkdir(parents=True)
    served.write_bytes(b"not the vgg16 weights")
    res = runner.invoke(app, ["weights", "fetch", "vgg16", "--mirror", url])
    assert res.exit_code == 1 and "md5" in res.output and "discarded" in res.output
    assert "Traceback" not in res.output
    assert not list(keras_home.glob("*")) if keras_home.exists() else True


def test_fetch_with_a_known_hash_succeeds_and_verify_catches_damage(keras_home, mirror):
    import hashlib

    www, url = mirror
    payload = b"weights bytes" * 1000
    (www / "w.h5").write_bytes(payload)
    wf = WeightsFile("w.h5", f"{url}/w.h5", hashlib.sha256(payload).hexdigest())
    path = fetch(wf)
    assert path.read_bytes() == payload and path.parent == keras_home
    # verify on the real table: a damaged vgg16 file in the cache is a mismatch, exit 1
    (keras_home / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"damaged")
    res = runner.invoke(app, ["weights", "verify"])
    assert res.exit_code == 1 and "mismatch" in res.output


def test_download_failures_are_one_clear_message(keras_home, mirror):
    _, url = mirror
    res = runner.invoke(app, ["weights", "fetch", "mobilenet_v2_035", "--mirror", url])
    assert res.exit_code == 1 and "HTTP 404" in res.output and "CLF_WEIGHTS_MIRROR" in res.output
    assert "Traceback" not in res.output
    with pytest.raises(WeightsError, match="Could not download .* --weights none"):
        fetch(HOST.backbones.get("mobilenet_v2_035").imagenet_file, base="http://127.0.0.1:9")
    res = runner.invoke(app, ["weights", "fetch", "no_such_backbone"])
    assert res.exit_code == 2 and "Unknown backbone" in res.output
