"""A persistent cache of backbone features on disk, one entry per image file.

Layout: ``<cache dir>/<extractor key>/<variant>-<id>.npz`` shards. The extractor key hashes
everything that changes what the backbone outputs for a given file (backbone, a fingerprint
of its actual weights, image size, preprocessing, loader and decoder version); inside it,
entries are keyed by the file's *content* hash, so a changed or added file misses on its
own and everything else still hits (a renamed file hits). ``variant`` separates the clean
features from each augmented copy. Shards are written under a temporary name and renamed,
so a crash never leaves a half-written entry and two runs can share a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

# Bump when decoding or extraction changes what a file's features are.
FORMAT = "clf-features/1"


def default_cache_dir() -> Path:
    """``$CLF_CACHE_DIR``, else ``$XDG_CACHE_HOME/clf/features``, else ``~/.cache/clf/features``."""
    if os.environ.get("CLF_CACHE_DIR"):
        return Path(os.environ["CLF_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clf" / "features"


def file_fingerprint(path: str | Path) -> str:
    """Hash of a file's bytes (not its name or time stamp): its sha256, which the dataset
    doctor has usually computed already in this run (clf.files.file_sha256)."""
    from clf.files import file_sha256

    return file_sha256(path)


def weights_fingerprint(model) -> str:
    """Hash of a model's actual weight values: covers 'imagenet', a file, or seeded random."""
    h = hashlib.blake2b(digest_size=16)
    for w in model.weights:
        value = np.asarray(w.numpy())
        h.update(f"{w.path}:{value.dtype}:{value.shape};".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def extractor_key(parts: Mapping[str, Any]) -> str:
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class FeatureCache:
    """Features per (variant, file content hash) for one extractor key."""

    def __init__(self, root: str | Path, parts: Mapping[str, Any]):
        self.root = Path(root)
        self.key = extractor_key(parts)
        self.dir = self.root / self.key
        self.parts = dict(parts)
        self._loaded: dict[str, dict[str, np.ndarray]] = {}

    def _shards(self, variant: str) -> Iterable[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob(f"{variant}-*.npz"))

    def entries(self, variant: str) -> dict[str, np.ndarray]:
        """Content hash -> feature vector, for every stored file of ``variant``."""
        if variant not in self._loaded:
            table: dict[str, np.ndarray] = {}
            for shard in self._shards(variant):
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        for h, row in zip(data["hashes"].tolist(), data["features"]):
                            table[h] = row
                except (OSError, ValueError, KeyError):
                    continue  # an unreadable shard is a miss, never an error
            self._loaded[variant] = table
        return self._loaded[variant]

    def lookup(self, variant: str, hashes: Sequence[str]) -> tuple[dict[int, np.ndarray], list[int]]:
        """``({index: features} for hits, [indices that missed])``."""
        table = self.entries(variant)
        hits, misses = {}, []
        for i, h in enumerate(hashes):
            if h in table:
                hits[i] = table[h]
            else:
                misses.append(i)
        return hits, misses

    def store(self, variant: str, hashes: Sequence[str], features: np.ndarray) -> None:
        if not len(hashes):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "key.json"
        if not info.exists():
            _atomic_write(info, lambda f: f.write(json.dumps(self.parts, indent=2, default=str).encode()))
        shard = self.dir / f"{variant}-{uuid.uuid4().hex[:12]}.npz"
        _atomic_write(shard, lambda f: np.savez(f, hashes=np.asarray(list(hashes)),
                                                features=np.asarray(features, np.float32)))
        table = self.entries(variant)
        for h, row in zip(hashes, features):
            table[h] = row


def _atomic_write(path: Path, write) -> None:
    """``write(binary file)`` under a temporary name in the same folder, then rename."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
