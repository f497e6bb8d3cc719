"""Pretrained weights: the Keras cache, a mirror for air-gapped sites (``CLF_WEIGHTS_MIRROR``),
hash checks. A download is checked and loaded into its architecture *before* it enters the
cache (``keras_downloads``), so an error page or another model's file never lands there."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Sequence, TYPE_CHECKING

from clf.errors import WeightsError
from clf.files import atomic_path, file_hash, keras_cache_dir, temp_name
from clf.host.keras_patches import replaced_get_file

if TYPE_CHECKING:
    from clf.host.manager import PluginHost
    from clf.host.registry import Backbone

MIRROR_ENV = "CLF_WEIGHTS_MIRROR"
KERAS_HOST = "https://storage.googleapis.com/"
TIMEOUT_S = 60


# sha256 of Keras files Keras publishes no hash for (the MobileNet family), pinned only once
# checked against an independent copy (see shared/weights/README.md); others rely on the full load.
PINNED_SHA256 = {
    "mobilenet_2_5_224_tf_no_top.h5": "dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf",
}


@dataclass(frozen=True)
class WeightsFile:
    fname: str
    origin: str
    file_hash: str | None = None  # Keras' known hash: 32 hex = md5, 64 hex = sha256

    @property
    def expected_hash(self) -> str | None:
        """Keras' hash, else the one clf pins (``PINNED_SHA256``), else None."""
        return self.file_hash or PINNED_SHA256.get(self.fname)

    @property
    def algorithm(self) -> str | None:
        expected = self.expected_hash
        return None if not expected else "sha256" if len(expected) == 64 else "md5"


def url_for(wf: WeightsFile, base: str | None = None) -> str:
    """The download URL: the Keras origin, or its path under ``base`` (default: the mirror env)."""
    base = base if base is not None else os.environ.get(MIRROR_ENV, "").strip()
    if not base:
        return wf.origin
    path = wf.origin[len(KERAS_HOST):] if wf.origin.startswith(KERAS_HOST) else wf.fname
    return base.rstrip("/") + "/" + path


def check(wf: WeightsFile, path: Path) -> str:
    """``ok``, ``missing``, ``mismatch`` or ``unchecked`` (Keras knows no hash for it)."""
    if not path.is_file():
        return "missing"
    if not wf.algorithm:
        return "unchecked"
    return "ok" if file_hash(path, wf.algorithm) == wf.expected_hash else "mismatch"


def _fixes(wf: WeightsFile) -> str:
    return (f"Fix: set {MIRROR_ENV} (or --weights-mirror) to a mirror serving the Keras "
            f"weights tree, or copy {wf.fname} into {keras_cache_dir()}, or pass --weights FILE, or "
            f"--weights none to train from random weights.")


def _not_loading(wf: WeightsFile, url: str, into: str, exc: Exception) -> WeightsError:
    """The file downloaded but does not load into ``into``: discarded, never cached."""
    return WeightsError(
        f"{wf.fname} from {url} does not load into {into}: {type(exc).__name__}: "
        f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. The file was discarded (not cached); "
        f"expected the original Keras Applications file. Check the mirror's copy. {_fixes(wf)}"
    )


def _download(wf: WeightsFile, url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` and check it against the expected hash (if any)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        dest.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        code = f"HTTP {exc.code} " if isinstance(exc, urllib.error.HTTPError) else ""
        raise WeightsError(
            f"Could not download {wf.fname} from {url}: {code}{reason}. Expected network "
            f"access to {'the mirror' if not url.startswith(KERAS_HOST) else 'the Keras weights host'} "
            f"or the file already in {keras_cache_dir()}. {_fixes(wf)}"
        ) from None
    if wf.algorithm and (digest := file_hash(dest, wf.algorithm)) != wf.expected_hash:
        dest.unlink(missing_ok=True)
        raise WeightsError(
            f"Downloaded {wf.fname} from {url} but its {wf.algorithm} is {digest}, not the known "
            f"{wf.expected_hash}; expected the original Keras Applications file. The file was "
            f"discarded. Check the mirror's copy. {_fixes(wf)}"
        )


def fetch(wf: WeightsFile, base: str | None = None, force: bool = False,
          validate: Callable[[Path], None] | None = None) -> Path:
    """The cached file, downloaded and checked first if needed; ``validate(path)`` vets it before caching."""
    target = keras_cache_dir() / wf.fname
    if not force and check(wf, target) in ("ok", "unchecked"):
        return target
    url = url_for(wf, base)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"Cannot create the weights cache {target.parent}: {exc.strerror}. "
                           f"{_fixes(wf)}") from None
    with atomic_path(target) as tmp:  # nothing under the real name until every check passed
        _download(wf, url, tmp)
        if validate is not None:
            validate(tmp)
    return target


def fetch_for(backbone: Backbone, base: str | None = None, force: bool = False) -> Path:
    """``clf weights fetch``: a backbone's ImageNet file, loaded into that backbone before it is cached."""
    wf = backbone.imagenet_file
    if wf is None:
        raise WeightsError(
            f"Backbone {backbone.name!r} (plugin {backbone.plugin!r}) has no known ImageNet weights "
            f"file; expected one of the Keras Applications backbones. Pass --weights FILE or "
            f"--weights none for it."
        )

    def load(path: Path) -> None:
        try:
            backbone.build((*backbone.input_size, 3), str(path))
        except Exception as exc:
            raise _not_loading(wf, url_for(wf, base), f"backbone {backbone.name!r}", exc) from None

    return fetch(wf, base, force, validate=load)


@contextmanager
def keras_downloads() -> Iterator[None]:
    """While active, Keras' weight downloads go through clf, and are cached only once loaded into the model."""
    staged: list[tuple[Path, Path, str]] = []  # (temporary file, cache file, url)

    def get_file(fname: str | None = None, origin: str | None = None, *args: Any, file_hash: str | None = None,
                 cache_subdir: str = "datasets", **kwargs: Any) -> Any:
        if _capturing or cache_subdir != "models" or not origin or kwargs.get("extract") or kwargs.get("untar"):
            return original(fname, origin, *args, file_hash=file_hash, cache_subdir=cache_subdir, **kwargs)
        wf = WeightsFile(fname or origin.rsplit("/", 1)[-1], origin, file_hash)
        target = keras_cache_dir() / wf.fname
        if check(wf, target) in ("ok", "unchecked"):
            return str(target)
        tmp = temp_name(target)
        _download(wf, url_for(wf), tmp)
        staged.append((tmp, target, url_for(wf)))
        return str(tmp)

    with replaced_get_file(get_file) as original:
        try:
            yield
        except WeightsError:
            raise
        except Exception as exc:
            if not staged:
                raise
            tmp, target, url = staged[-1]
            raise _not_loading(WeightsFile(target.name, url), url, "the model", exc) from None
        else:
            for tmp, target, _ in staged:  # loaded in full by Keras: now it may enter the cache
                os.replace(tmp, target)
        finally:
            for tmp, _, _ in staged:
                tmp.unlink(missing_ok=True)


class _Captured(Exception):
    pass


_capturing = False  # while capture() runs, keras_downloads() passes calls through to it


def capture(build: Callable[..., Any], input_shape: Sequence[int]) -> WeightsFile | None:
    """Which file ``build(input_shape, "imagenet")`` would download (nothing is downloaded)."""
    def get_file(fname: str | None = None, origin: Any = None, *args: Any, file_hash: str | None = None,
                 **kwargs: Any) -> Any:  # origin: a URL (every Keras weights download has one)
        raise _Captured(WeightsFile(fname or origin.rsplit("/", 1)[-1], origin, file_hash))

    global _capturing
    with replaced_get_file(get_file):
        _capturing = True
        try:
            build(tuple(input_shape), "imagenet")
        except _Captured as c:
            return c.args[0]
        finally:
            _capturing = False
    return None


def status_rows(host: PluginHost, names: Collection[str] = ()) -> list[dict[str, Any]]:
    """One row per backbone with a known ImageNet file: cached or not, file, size, hash check."""
    rows = []
    for bb in (b for b in host.backbones if not names or b.name in names):
        wf = bb.imagenet_file
        if wf is None:
            rows.append({"backbone": bb.name, "file": None, "cached": False, "bytes": None, "status": "no file known"})
            continue
        path = keras_cache_dir() / wf.fname
        rows.append({"backbone": bb.name, "file": wf.fname, "cached": path.is_file(),
                     "bytes": path.stat().st_size if path.is_file() else None, "path": str(path),
                     "status": "cached" if path.is_file() else "not cached", "url": url_for(wf)})
    return rows

