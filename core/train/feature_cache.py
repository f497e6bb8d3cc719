"""Backbone features on disk, in ``<cache dir>/<extractor key>/<variant>-<sha256>.npz`` shards
written atomically (runs can share a cache) and keyed by file *content* hash, so only changed
or added files miss. A shard whose bytes no longer match the sha256 in its name is a miss,
moved into ``bad/`` and reported once; an unwritable folder leaves the features in memory.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from clf.files import cache_dir, write_bytes, write_json
from clf.infer.store import extractor_key
from clf.data.filecheck import FileProblem, read_file


def default_cache_dir() -> Path:
    """``features`` in clf's cache folder (``$CLF_CACHE_DIR``, else ``$XDG_CACHE_HOME/clf``,
    else ``~/.cache/clf``)."""
    return cache_dir("features")


class FeatureCache:
    """Features per (variant, file content hash) for one extractor key. ``note(text)`` is
    called once per damaged shard and once if the folder is unusable; notes are also kept
    in ``notes``."""

    BAD_DIR = "bad"

    def __init__(self, root: str | Path, parts: Mapping[str, Any], note: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.key = extractor_key(parts)
        self.dir = self.root / self.key
        self.parts = dict(parts)
        self.note = note
        self.notes: list[str] = []
        self.usable = True  # False after a failed write: features stay in memory
        self._loaded: dict[str, dict[str, np.ndarray]] = {}

    def _say(self, text: str) -> None:
        self.notes.append(text)
        if self.note is not None:
            self.note(text)

    def entries(self, variant: str) -> dict[str, np.ndarray]:
        """Content hash -> feature vector, for every stored file of ``variant``."""
        if variant not in self._loaded:
            table: dict[str, np.ndarray] = {}
            try:  # a missing folder globs to nothing
                shards = sorted(self.dir.glob(f"{variant}-*.npz"))
            except OSError:
                shards = []
            for shard in shards:
                try:
                    hashes, features = _read_shard(shard, variant)
                except ShardError as exc:
                    self._set_aside(shard, str(exc))
                    continue
                table.update(zip(hashes, features))
            self._loaded[variant] = table
        return self._loaded[variant]

    def _set_aside(self, shard: Path, why: str) -> None:
        target = self.dir / self.BAD_DIR / shard.name
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(shard, target)
            where = f"moved to {target}"
        except OSError as exc:
            where = f"could not be moved aside ({exc.strerror or exc}); delete it"
        self._say(f"Feature cache shard {shard.name} is damaged ({why}); {where}. Its images are "
                  f"extracted again.")

    def lookup(self, variant: str, hashes: Sequence[str]) -> tuple[dict[int, np.ndarray], list[int]]:
        """``({index: features} for hits, [indices that missed])``."""
        table = self.entries(variant)
        hits = {i: table[h] for i, h in enumerate(hashes) if h in table}
        return hits, [i for i in range(len(hashes)) if i not in hits]

    def store(self, variant: str, hashes: Sequence[str], features: np.ndarray) -> None:
        """Keep the features (always in memory; on disk while the folder is usable)."""
        if not len(hashes):
            return
        table = self.entries(variant)
        for h, row in zip(hashes, features):
            table[h] = row
        if not self.usable:
            return
        try:
            self._write(variant, hashes, features)
        except OSError as exc:
            self.usable = False
            self._say(f"Feature cache folder {self.root} is unusable ({exc.strerror or exc}"
                      f"{': ' + str(exc.filename) if exc.filename else ''}); features are kept in "
                      f"memory for this run only. Pass --cache-dir with a writable folder, or "
                      f"--no-cache.")

    def _write(self, variant: str, hashes: Sequence[str], features: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "key.json"
        if not info.exists():
            write_json(info, self.parts)
        buf = io.BytesIO()
        np.savez(buf, hashes=np.asarray(list(hashes)), features=np.asarray(features, np.float32))
        data = buf.getvalue()
        write_bytes(self.dir / f"{variant}-{hashlib.sha256(data).hexdigest()}.npz", data)


class ShardError(Exception):
    """Why a shard cannot be used."""


MAX_SHARD_BYTES = 4 * 1024**3


def _read_shard(shard: Path, variant: str) -> tuple[list[str], np.ndarray]:
    """A shard's (hashes, features) after checking its bytes against the sha256 in its name."""
    expected = shard.name[len(variant) + 1:-len(".npz")]
    try:
        data = read_file(shard, MAX_SHARD_BYTES)
    except FileProblem as problem:
        raise ShardError(problem.reason) from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise ShardError("its contents do not match the sha256 in its name: truncated, altered or "
                         "not written by clf")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            hashes, features = npz["hashes"], npz["features"]
    except Exception as exc:  # any unreadable zip is the same miss
        raise ShardError(f"{type(exc).__name__}: {exc}") from None
    if (hashes.ndim != 1 or features.ndim != 2 or len(hashes) != len(features)
            or not np.all(np.isfinite(features))):
        raise ShardError(f"unexpected arrays (hashes {hashes.shape}, features {features.shape})")
    return hashes.astype(str).tolist(), features.astype(np.float32, copy=False)
