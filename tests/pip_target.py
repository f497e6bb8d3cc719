"""pip-install local plugin packages into a throwaway folder, the way a user would install
them, without changing the test environment: the folder goes on ``sys.path`` (and
PYTHONPATH for subprocesses) only for the tests that ask for it, and importlib.metadata
finds the packages' entry points there."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PACKAGES = [REPO / "examples" / "clf-scratch-cnn", REPO / "examples" / "clf-csv-loader"]
BROKEN_PACKAGE = REPO / "tests" / "plugin_packages" / "clf-broken-plugins"


def pip_install(packages: list[Path], target: Path) -> None:
    """``pip install --no-deps --target TARGET`` each package, from a copy of its source
    (so no build/ or egg-info folder lands in the checkout)."""
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        for pkg in packages:
            copy = Path(tmp) / pkg.name
            shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            sources.append(str(copy))
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
               "--target", str(target)]
        if importlib.util.find_spec("setuptools") is not None:
            # The environment's own setuptools builds them: no download, no network.
            cmd += ["--no-build-isolation", "--no-index"]
        done = subprocess.run(cmd + sources, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"pip install failed ({' '.join(cmd)}):\n{done.stdout}\n{done.stderr}")
