"""Extraction spread over the strategy's devices (most of a frozen-backbone run, so where
added hardware pays); every process ends with every image's features, in file order.
``ReplicaForward`` gives each local replica a contiguous slice of each batch; across workers,
``Workers.exchange`` checks that all see the same files, deals the chief's cache misses by
content hash and all-gathers the features, so the head trains on identical features everywhere.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence, TYPE_CHECKING

import numpy as np

from clf.errors import DataError
from clf.logs import drop_message
from clf.infer.forward import forward_fn

if TYPE_CHECKING:
    from clf.train.distribute import Distribution
    from clf.train.feature_cache import FeatureCache
    from clf.train.features import SplitFeatures


def replica_sizes(n: int, replicas: int) -> list[int]:
    """Rows per replica for a batch of ``n``: contiguous slices differing by one at most."""
    return [n // replicas + (i < n % replicas) for i in range(replicas)]


class ReplicaForward:
    """``images -> features`` with each batch split over the strategy's local replicas;
    ``rows`` counts each replica's rows. A batch smaller than the replica count runs on the
    first one: an empty slice cannot go through TensorFlow's CPU convolution."""

    def __init__(self, strategy: Any, extractor: Any) -> None:
        import tensorflow as tf

        self.strategy = strategy
        self.replicas = len(strategy.extended.worker_devices)  # this process's devices
        self.rows = [0] * self.replicas
        self._forward = forward_fn(extractor)
        # A Python callable: given a tf.function, MirroredStrategy calls it once, not per replica.
        self._step = tf.function(lambda v: strategy.run(lambda x: self._forward(x), args=(v,)),
                                 reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        n = len(images)
        if n < self.replicas:
            self.rows[0] += n
            return np.asarray(self._forward(images))
        sizes = replica_sizes(n, self.replicas)
        starts = np.cumsum([0] + sizes)

        def slice_for(context: Any) -> np.ndarray:
            # Global replica ids run worker by worker: take the local index.
            i = context.replica_id_in_sync_group % self.replicas
            return images[starts[i]:starts[i + 1]]

        values = self.strategy.experimental_distribute_values_from_function(slice_for)
        outputs = self.strategy.experimental_local_results(self._step(values))
        for i, out in enumerate(outputs):
            self.rows[i] += int(out.shape[0])
        return np.concatenate([np.asarray(o) for o in outputs])

    def take_rows(self) -> list[int]:
        """Rows per replica since the last call (the record reports them per split)."""
        rows, self.rows = self.rows, [0] * self.replicas
        return rows


def replica_forward(dist: Distribution, extractor: Any) -> ReplicaForward | None:
    """A ``ReplicaForward`` when this process has several replicas, else None."""
    if dist.name not in ("mirrored", "multiworker") or len(dist.devices) < 2:
        return None
    return ReplicaForward(dist.strategy, extractor)


def assign(hashes: Sequence[str], indices: Sequence[int], workers: int) -> list[list[int]]:
    """Split ``indices`` (into ``hashes``) between ``workers``: sorted by content hash (then
    index, for duplicates) and dealt round-robin, so the same files in any order give the
    same shares. Each share is in file order."""
    ranked = sorted(indices, key=lambda i: (hashes[i], i))
    return [sorted(ranked[w::workers]) for w in range(workers)]


def _fingerprint(hashes: Sequence[str], split: str, variant: str) -> np.ndarray:
    """Four 16-bit words of a hash of the file list, as float32 (exact in any collective)."""
    digest = hashlib.blake2b("\n".join([split, variant, *hashes]).encode(), digest_size=8).digest()
    return np.frombuffer(digest, np.uint16).astype(np.float32)


class Workers:
    """This process's place among the workers of a multi-worker run, and the exchange."""

    def __init__(self, strategy: Any) -> None:
        import tensorflow as tf

        self.strategy = strategy
        resolver = strategy.cluster_resolver
        spec = resolver.cluster_spec().as_dict() or {}
        chiefs = len(spec.get("chief", []))
        # The chief task is rank 0, then the workers by index (as in clf.train.distribute.is_chief).
        self.rank = 0 if resolver.task_type == "chief" else chiefs + int(resolver.task_id or 0)
        self.count = chiefs + len(spec.get("worker", []))
        self.local = len(strategy.extended.worker_devices)

        def gather(value: Any) -> Any:
            # tf.identity puts the value on the replica's device, the collective's destination.
            return tf.distribute.get_replica_context().all_gather(tf.identity(value), axis=0)

        def gather_step(value: Any) -> Any:
            return strategy.run(gather, args=(value,))

        # Traced once per shape by design; TensorFlow would warn of retracing.
        drop_message("tensorflow", "Workers.__init__.<locals>.gather_step")
        self._gather_step = tf.function(gather_step)

    def _gather(self, mine: np.ndarray, blank: np.ndarray) -> np.ndarray:
        """Every replica's array concatenated in replica order: this worker's first replica
        gives ``mine``, its other local replicas ``blank`` (same shape)."""
        def value_for(context: Any) -> np.ndarray:
            return mine if context.replica_id_in_sync_group % self.local == 0 else blank

        values = self.strategy.experimental_distribute_values_from_function(value_for)
        return np.asarray(self.strategy.experimental_local_results(self._gather_step(values))[0])

    def exchange(self, split: str, variant: str, hashes: Sequence[str], cache: FeatureCache | None, width: int,
                 extract_files: Callable[[list[int]], np.ndarray],
                 progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[int], int]:
        """``(features [n, width] in file order, images extracted per rank, cache hits)`` of one
        variant of one split; ``extract_files(indices)`` runs this worker's share, ``cache`` is
        the chief's disk cache (None elsewhere)."""
        n = len(hashes)
        # Ranks and file-list fingerprints, so workers seeing different files all stop clearly.
        header = np.concatenate([[float(self.rank)], _fingerprint(hashes, split, variant)])[None]
        blank = np.concatenate([[-1.0], np.zeros(header.shape[1] - 1)])[None]
        position = self._positions(self._gather(header.astype(np.float32), blank.astype(np.float32)),
                                   header[0, 1:], split)
        # The chief's cache hits, as a mask read from the chief's row.
        hits = cache.lookup(variant, hashes)[0] if cache is not None and self.rank == 0 else {}
        mask = np.zeros((1, n), np.float32)
        mask[0, list(hits)] = 1.0
        masks = self._gather(mask, np.zeros_like(mask))
        hit_rows = [int(i) for i in np.flatnonzero(masks[position[0]] > 0.5)]
        shares = assign(hashes, sorted(set(range(n)) - set(hit_rows)), self.count)
        # The chief's contribution carries the cache hits first.
        orders = [(hit_rows if r == 0 else []) + shares[r] for r in range(self.count)]

        size = max(1, max(len(o) for o in orders))  # one shape for every contribution
        padded = np.zeros((size, width), np.float32)
        share, start = shares[self.rank], len(hit_rows) if self.rank == 0 else 0
        if share:
            padded[start:start + len(share)] = extract_files(share)
        if self.rank == 0 and hit_rows:
            padded[:len(hit_rows)] = np.stack([hits[i] for i in hit_rows])
        gathered = self._gather(padded, np.zeros_like(padded))

        features = np.empty((n, width), np.float32)
        for r, order in enumerate(orders):
            start = position[r] * size
            features[order] = gathered[start:start + len(order)]
        if cache is not None and self.rank == 0:
            missed = [i for s in shares for i in s]
            cache.store(variant, [hashes[i] for i in missed], features[missed])
        if progress is not None:
            progress(n - len(shares[self.rank]))  # its own share reported itself
        return features, [len(s) for s in shares], len(hit_rows)

    def _positions(self, headers: np.ndarray, fingerprint: np.ndarray, split: str) -> dict[int, int]:
        """Rank -> the replica position of its contribution; checks the workers agree."""
        position = {int(h[0]): p for p, h in enumerate(headers) if h[0] >= 0}
        if sorted(position) != list(range(self.count)):
            raise DataError(
                f"Expected one extraction contribution from each of the {self.count} workers, got ranks "
                f"{sorted(position)}; TF_CONFIG must list the same cluster on every worker. Fix TF_CONFIG."
            )
        differ = [r for r, p in position.items() if not np.array_equal(headers[p, 1:], fingerprint)]
        if differ:
            raise DataError(
                f"The workers see different files in the {split} split (workers {differ} differ from "
                f"worker {self.rank}); expected the same --data, the same files and the same --seed on "
                f"every worker. Point every worker at the same data (a shared folder)."
            )
        return position


def workers_for(dist: Distribution) -> Workers | None:
    """The ``Workers`` of a multi-worker run with more than one worker, else None."""
    if dist.name != "multiworker":
        return None
    workers = Workers(dist.strategy)
    return workers if workers.count > 1 else None


def record(split_features: SplitFeatures, forward: ReplicaForward | None) -> dict[str, Any]:
    """The run record's counts for one split: extracted and cached images, and per worker
    or replica when there are several."""
    counts: dict[str, Any] = {"extracted": split_features.extracted, "cached": split_features.cached}
    if split_features.by_worker is not None:
        counts["by_worker"] = list(split_features.by_worker)
    if forward is not None:
        counts["by_replica"] = forward.take_rows()
    return counts
