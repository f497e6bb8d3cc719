"""Shared fixtures: tiny generated image folders, the shared real data, a fresh plugin host."""

from __future__ import annotations

import gc
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = SHARED / "weights"
DATASETS = SHARED / "datasets"
MOBILENET_V2_035 = WEIGHTS / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
MOBILENET_025 = WEIGHTS / "mobilenet_v1_0.25_224_imagenet_notop.weights.h5"

# A small backbone and size that keep end-to-end tests to seconds on two cores. MobileNet
# (width 0.25) has the fewest layers of the registered backbones, and a run's cost is mostly
# per layer (building, saving, reloading, tracing): a run takes about half the time of one
# on mobilenet_v2_035. SMALL_WEIGHTS are its real ImageNet weights (in ../shared).
SMALL_BACKBONE = "mobilenet_025"
SMALL_WEIGHTS = MOBILENET_025
SMALL_SIZE = 32


def make_image(path: Path, label: int, rng: np.random.Generator, size: int = 40, fmt: str = "JPEG") -> None:
    """A class-dependent image: class k has a bright band at a k-dependent position."""
    img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    band = slice((label * size) // 4, (label * size) // 4 + size // 4)
    img[band, :, label % 3] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format=fmt)


def make_folder(root: Path, classes=("ant", "bee", "cat"), per_class: int = 6, *, split_dirs: bool = False,
                val_per_class: int = 2, seed: int = 0) -> Path:
    """Class folders of generated JPEGs; with ``split_dirs``, train/ and val/ folders."""
    rng = np.random.default_rng(seed)
    layouts = [("train", per_class), ("val", val_per_class)] if split_dirs else [("", per_class)]
    for sub, n in layouts:
        for label, name in enumerate(classes):
            for i in range(n):
                make_image(root / sub / name / f"{name}_{i}.jpg", label, rng)
    return root


def pytest_collection_finish(session):
    """Freeze what collection loaded (TensorFlow, Keras, the test modules: millions of objects
    that live as long as the process) out of the garbage collector's sight: every later
    collection, including the one in each ``keras.backend.clear_session()``, then scans only
    what the tests make (tests/test_backbone_contract.py: 125 s -> 108 s in one process)."""
    gc.collect()
    gc.freeze()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """3 classes x 6 generated images, class folders directly under the root."""
    return make_folder(tmp_path / "data")


@pytest.fixture
def split_folder(tmp_path) -> Path:
    """train/ and val/ folders, 3 classes."""
    return make_folder(tmp_path / "data", split_dirs=True)


@pytest.fixture(scope="session", autouse=True)
def session_feature_cache_dir(tmp_path_factory):
    """Session and module fixtures are set up before any test's own cache (below): they
    get a throwaway one too, never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLF_CACHE_DIR", str(tmp_path_factory.mktemp("session-feature-cache")))
        yield


@pytest.fixture(autouse=True)
def feature_cache_dir(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty feature cache, never the user's ~/.cache."""
    path = tmp_path / "feature-cache"
    monkeypatch.setenv("CLF_CACHE_DIR", str(path))
    return path


@pytest.fixture
def host():
    """A fresh plugin host (built-ins and installed plugins) that a test may add to freely."""
    from clf import PluginHost

    return PluginHost()


@pytest.fixture
def small_config(tmp_path, image_folder):
    """A RunConfig that trains in seconds: small backbone, random weights, tiny images.

    The head trains with Keras fit (``solver="keras"``): most tests exercise the epoch
    machinery (history, checkpoints, resume, callbacks). Tests of the default, solved linear
    head pass ``solver="auto"`` (tests/test_linear_head.py).

    Export verification is off (it is 40% of a small run: reloading and tracing every
    artifact): tests whose subject changes the exported model (formats, crop, preprocessing,
    fine-tuning, precision, runtimes, the solved head) pass ``verify=True``."""
    from clf import RunConfig

    def make(**changes):
        base = dict(backbone=SMALL_BACKBONE, data=str(image_folder), weights="none", epochs=1,
                    batch_size=4, image_size=SMALL_SIZE, output=str(tmp_path / "run"), augment=False,
                    solver="keras", verify=False)
        base.update(changes)
        return RunConfig(**base)

    return make


@dataclass
class TrainedRun:
    """A finished run and what made it (see the ``trained_run`` fixture)."""

    result: object  # clf.RunResult
    observer: object  # the clf.RecordingObserver that saw every event of the run
    data: Path  # the images it trained on: make_folder's 3 classes x 6, as image_folder
    cache: Path  # the feature cache it filled

    @property
    def run_dir(self) -> Path:
        return self.result.run_dir


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """One run with small_config's settings (2 epochs, augmentation on, h5 export), trained
    once per session and shared by the tests that only read it: its model, run folder,
    labels, checkpoint and observer events. Training is most of a test's cost, so a test
    that needs *a* trained run, not one of its own, takes this one. Never change its folder:
    ``copy_run`` it into the test's tmp_path first."""
    import clf

    root = tmp_path_factory.mktemp("trained")
    data = make_folder(root / "data")
    observer = clf.RecordingObserver()
    config = clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=2, batch_size=4,
                           image_size=SMALL_SIZE, output=str(root / "run"), augment=True,
                           cache_dir=str(root / "feature-cache"), solver="keras")
    return TrainedRun(clf.run(config, observer), observer, data, root / "feature-cache")


def copy_run(run: TrainedRun, dest: Path) -> Path:
    """A private copy of the shared run's folder, for a test that changes it."""
    return Path(shutil.copytree(run.run_dir, dest))


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared weights/datasets folder is not beside this checkout")
    return path


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin packages and the deliberately broken one, pip-installed once per
    session into a temporary folder (not into the test environment)."""
    from pip_target import BROKEN_PACKAGE, EXAMPLE_PACKAGES, pip_install

    site = tmp_path_factory.mktemp("plugin-site")
    pip_install([*EXAMPLE_PACKAGES, BROKEN_PACKAGE], site)
    return site


@pytest.fixture
def installed_plugins(plugin_site, monkeypatch) -> Path:
    """Makes the packages in ``plugin_site`` installed for one test: on sys.path (where
    importlib.metadata looks for entry points) and PYTHONPATH (for subprocesses)."""
    from clf.host.manager import reset_host

    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")])))
    for var in ("CLF_LOAD_PLUGINS", "CLF_STRICT_PLUGINS", "CLF_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    reset_host()
    yield plugin_site
    reset_host()
