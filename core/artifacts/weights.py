"""Pretrained weights, offline: the Keras cache, a mirror for air-gapped sites, hash checks.

Keras Applications download their ImageNet files with ``keras.utils.get_file(fname, origin,
file_hash=..., cache_subdir="models")`` from ``https://storage.googleapis.com/...`` and
keep them in ``$KERAS_HOME/models`` (default ``~/.keras/models``). clf takes that download
over (``keras_downloads()``), so that:

- a mirror base URL (``CLF_WEIGHTS_MIRROR`` or ``--weights-mirror``) replaces the Google
  host while keeping the path and file name: ``<mirror>/tensorflow/keras-applications/
  mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5``. A
  site copies that tree once (or just the files it needs) onto any HTTP server;
- the file is checked against the hash Keras knows for it (md5 or sha256) before it is
  moved into the cache under its real name (atomic: never a half file in the cache);
- a failure is one message that names the URL, the cache path and the ways out.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from clf.errors import WeightsError
from clf.files import atomic_path, file_hash, keras_cache_dir

MIRROR_ENV = "CLF_WEIGHTS_MIRROR"
KERAS_HOST = "https://storage.googleapis.com/"
TIMEOUT_S = 60


@dataclass(frozen=True)
class WeightsFile:
    fname: str
    origin: str
    file_hash: str | None = None  # Keras' known hash: 32 hex = md5, 64 hex = sha256

    @property
    def algorithm(self) -> str | None:
        if not self.file_hash:
            return None
        return "sha256" if len(self.file_hash) == 64 else "md5"


def mirror() -> str | None:
    value = os.environ.get(MIRROR_ENV, "").strip()
    return value.rstrip("/") + "/" if value else None


def url_for(wf: WeightsFile, base: str | None = None) -> str:
    """The download URL: the Keras origin, or the same path under the mirror base."""
    base = base if base is not None else mirror()
    if base and wf.origin.startswith(KERAS_HOST):
        return base.rstrip("/") + "/" + wf.origin[len(KERAS_HOST):]
    if base:
        return base.rstrip("/") + "/" + wf.fname
    return wf.origin


def check(wf: WeightsFile, path: Path) -> str:
    """``ok``, ``missing``, ``mismatch`` or ``unchecked`` (Keras knows no hash for it)."""
    if not path.is_file():
        return "missing"
    if not wf.algorithm:
        return "unchecked"
    return "ok" if file_hash(path, wf.algorithm) == wf.file_hash else "mismatch"


def _fixes(wf: WeightsFile) -> str:
    return (f"Fix: set {MIRROR_ENV} (or --weights-mirror) to a mirror serving the Keras "
            f"weights tree, or copy {wf.fname} into {keras_cache_dir()}, or pass --weights FILE, or "
            f"--weights none to train from random weights.")


def fetch(wf: WeightsFile, base: str | None = None, force: bool = False) -> Path:
    """The cached file, downloading and checking it first if needed."""
    target = keras_cache_dir() / wf.fname
    if not force and check(wf, target) in ("ok", "unchecked"):
        return target
    url = url_for(wf, base)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            status = check(wf, tmp)
            if status == "mismatch":
                raise WeightsError(
                    f"Downloaded {wf.fname} from {url} but its {wf.algorithm} is "
                    f"{file_hash(tmp, wf.algorithm)}, not Keras' {wf.file_hash}; expected the "
                    f"original Keras Applications file. The file was discarded. Check the "
                    f"mirror's copy. {_fixes(wf)}"
                )
    except WeightsError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        code = f"HTTP {exc.code} " if isinstance(exc, urllib.error.HTTPError) else ""
        raise WeightsError(
            f"Could not download {wf.fname} from {url}: {code}{reason}. Expected network "
            f"access to {'the mirror' if (base or mirror()) else 'the Keras weights host'} "
            f"or the file already in {keras_cache_dir()}. {_fixes(wf)}"
        ) from None
    return target


@contextmanager
def keras_downloads() -> Iterator[None]:
    """While active, Keras' weight downloads go through ``fetch`` (mirror, hash, messages)."""
    from keras.src.utils import file_utils

    original = file_utils.get_file

    def get_file(fname=None, origin=None, *args, file_hash=None, cache_subdir="datasets", **kwargs):
        if _capturing or cache_subdir != "models" or not origin or kwargs.get("extract") or kwargs.get("untar"):
            return original(fname, origin, *args, file_hash=file_hash, cache_subdir=cache_subdir, **kwargs)
        return str(fetch(WeightsFile(fname or origin.rsplit("/", 1)[-1], origin, file_hash)))

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = original


class _Captured(Exception):
    pass


_capturing = False  # while capture() runs, keras_downloads() passes calls through to it


def capture(build, input_shape) -> WeightsFile | None:
    """Which file ``build(input_shape, "imagenet")`` would download (nothing is downloaded)."""
    from keras.src.utils import file_utils

    original = file_utils.get_file

    def get_file(fname=None, origin=None, *args, file_hash=None, **kwargs):
        raise _Captured(WeightsFile(fname or origin.rsplit("/", 1)[-1], origin, file_hash))

    global _capturing
    file_utils.get_file, _capturing = get_file, True
    try:
        build(tuple(input_shape), "imagenet")
    except _Captured as c:
        return c.args[0]
    finally:
        file_utils.get_file, _capturing = original, False
    return None


def status_rows(host, names=()) -> list[dict]:
    """One row per backbone with a known ImageNet file: cached or not, file, size, hash check."""
    rows = []
    for bb in host.backbones:
        if names and bb.name not in names:
            continue
        wf = bb.imagenet_file
        if wf is None:
            rows.append({"backbone": bb.name, "file": None, "cached": False, "bytes": None, "status": "no file known"})
            continue
        path = keras_cache_dir() / wf.fname
        rows.append({"backbone": bb.name, "file": wf.fname, "cached": path.is_file(),
                     "bytes": path.stat().st_size if path.is_file() else None, "path": str(path),
                     "status": "cached" if path.is_file() else "not cached", "url": url_for(wf)})
    return rows


def lookup(host, name: str) -> WeightsFile:
    bb = host.backbones.get(name)
    if bb.imagenet_file is None:
        raise WeightsError(
            f"Backbone {bb.name!r} (plugin {bb.plugin!r}) has no known ImageNet weights file; "
            f"expected one of the Keras Applications backbones. Pass --weights FILE or "
            f"--weights none for it."
        )
    return bb.imagenet_file
