"""Extraction spread over the strategy's devices: local replicas split each batch, workers
split the file list; every process ends with every image's features, in file order.

Extraction is most of a run with a frozen backbone, so this is where added hardware pays.

- **Replicas** (``--strategy mirrored``, and each worker's local GPUs under
  ``multiworker``): ``ReplicaForward`` hands replica *i* the *i*-th contiguous slice of
  every batch through TensorFlow's own ``strategy.run`` and concatenates the replicas'
  outputs in replica order, so rows come back in the batch's order.
- **Workers** (``--strategy multiworker``): ``Workers`` splits each split's images
  between the workers and exchanges the features with all-gathers over the strategy's
  collectives (the head then trains on identical features on every worker). Only the chief
  reads and writes the disk cache, as before:

  1. every worker hashes its file list (the cache key). A first all-gather carries each
     worker's rank and a fingerprint of its file list (a worker that sees other files is
     an error, not a silently wrong model); the chief looks the hashes up in its cache and
     a second one carries its hit mask, so every worker knows which images still need
     the backbone;
  2. those images are sorted by content hash and dealt round-robin (``assign``): the
     assignment depends on the files' contents, not on their order, and the shares differ
     by one image at most; every worker computes every share itself;
  3. each worker extracts its share; a third all-gather (each share padded to the largest,
     so every contribution has one shape) gives every worker all rows, which it puts back
     in file order. The chief's contribution also carries the cache hits; it then stores
     the newly extracted features in its cache.

  Augmented copies are split the same way, one exchange per copy. A loader that lists no
  files (or cannot build a dataset for a subset) gives nothing to split: every worker then
  extracts everything itself, as before.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence, TYPE_CHECKING

import numpy as np

from clf.errors import DataError
from clf.logs import drop_message

if TYPE_CHECKING:
    from clf.train.distribute import Distribution
    from clf.train.feature_cache import FeatureCache
    from clf.train.features import SplitFeatures


def local_replicas(strategy: Any) -> int:
    """This process's devices under ``strategy`` (1 for the default strategy)."""
    try:
        return len(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):  # the default strategy has no device list
        return 1


def replica_sizes(n: int, replicas: int) -> list[int]:
    """Rows per replica for a batch of ``n``: contiguous slices differing by one at most."""
    return [n // replicas + (i < n % replicas) for i in range(replicas)]


class ReplicaForward:
    """``images -> features`` with each batch split over the strategy's local replicas.

    ``rows`` counts the rows each local replica extracted (the run record reports them).
    A batch smaller than the number of replicas runs on the first one: an empty slice
    cannot go through a convolution in TensorFlow's CPU kernels.
    """

    def __init__(self, strategy: Any, extractor: Any) -> None:
        import tensorflow as tf

        from clf.infer.forward import forward_fn

        self.strategy = strategy
        self.replicas = local_replicas(strategy)
        self.rows = [0] * self.replicas
        self._forward = forward_fn(extractor)
        # A Python callable for strategy.run: handed a tf.function directly, MirroredStrategy
        # would call it once with the per-replica value instead of once per replica.
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
            # Global replica ids run worker by worker (multiworker): the local index is the
            # id modulo this worker's replica count.
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


def replica_forward(dist: Distribution | None, extractor: Any) -> ReplicaForward | None:
    """A ``ReplicaForward`` when this process has several replicas, else None."""
    if dist is None or dist.name not in ("mirrored", "multiworker") or local_replicas(dist.strategy) < 2:
        return None
    return ReplicaForward(dist.strategy, extractor)


def assign(hashes: Sequence[str], indices: Sequence[int], workers: int) -> list[list[int]]:
    """Split ``indices`` (into ``hashes``) between ``workers``: sorted by content hash (then
    index, for duplicate files) and dealt round-robin. Each share is in file order.

    The same files in any order give the same shares, and shares differ by one at most.
    """
    ranked = sorted(indices, key=lambda i: (hashes[i], i))
    return [sorted(ranked[w::workers]) for w in range(workers)]


def worker_rank(strategy: Any) -> tuple[int, int]:
    """``(this worker's rank, number of workers)``: the chief task is rank 0, then the
    workers by index (worker 0 is the chief when there is no chief task, as in
    clf.train.distribute.is_chief)."""
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict() or {}
    chiefs = len(spec.get("chief", []))
    count = chiefs + len(spec.get("worker", []))
    rank = 0 if resolver.task_type == "chief" else chiefs + int(resolver.task_id or 0)
    return rank, count


def _fingerprint(hashes: Sequence[str], split: str, variant: str) -> np.ndarray:
    """Four 16-bit words of a hash of the file list, as float32 (exact in any collective)."""
    digest = hashlib.blake2b("\n".join([split, variant, *hashes]).encode(), digest_size=8).digest()
    return np.frombuffer(digest, np.uint16).astype(np.float32)


class Workers:
    """This process's place among the workers of a multi-worker run, and the exchange."""

    def __init__(self, strategy: Any) -> None:
        import tensorflow as tf

        self.strategy = strategy
        self.rank, self.count = worker_rank(strategy)
        self.local = local_replicas(strategy)

        def gather(value: Any) -> Any:
            # tf.identity places the value on the replica's device, which the collective
            # needs as its destination.
            ctx = tf.distribute.get_replica_context()
            return ctx.all_gather(tf.identity(value), axis=0)

        def gather_step(value: Any) -> Any:
            return strategy.run(gather, args=(value,))

        # Traced once per shape it exchanges (by design: a few per split), which TensorFlow
        # would report as retracing.
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
        """Every file's features for one variant of one split, extracted across the workers.

        ``extract_files(indices)`` runs this worker's share through the backbone;
        ``cache`` is the chief's disk cache (None elsewhere, or with ``--no-cache``).
        Returns ``(features [n, width] in file order, images extracted per worker rank,
        images served from the cache)``.
        """
        n = len(hashes)
        # First every worker's rank and file-list fingerprint (one shape whatever the files),
        # so that workers seeing different files stop with a clear error on every worker.
        header = np.concatenate([[float(self.rank)], _fingerprint(hashes, split, variant)])[None]
        blank = np.concatenate([[-1.0], np.zeros(header.shape[1] - 1)])[None]
        position = self._positions(self._gather(header.astype(np.float32), blank.astype(np.float32)),
                                   header[0, 1:], split)
        # Then the chief's cache hits, as a mask every worker reads from the chief's row.
        hits = cache.lookup(variant, hashes)[0] if cache is not None and self.rank == 0 else {}
        mask = np.zeros((1, n), np.float32)
        mask[0, list(hits)] = 1.0
        masks = self._gather(mask, np.zeros_like(mask))
        hit_rows = [int(i) for i in np.flatnonzero(masks[position[0]] > 0.5)]
        hit_set = set(hit_rows)
        shares = assign(hashes, [i for i in range(n) if i not in hit_set], self.count)
        # Rows each rank contributes: the chief's carry the cache hits first.
        orders = [(hit_rows if r == 0 else []) + shares[r] for r in range(self.count)]

        mine = np.zeros((len(orders[self.rank]), width), np.float32)
        if shares[self.rank]:
            mine[len(orders[self.rank]) - len(shares[self.rank]):] = extract_files(shares[self.rank])
        if self.rank == 0 and hit_rows:
            mine[:len(hit_rows)] = np.stack([hits[i] for i in hit_rows])
        size = max(1, max(len(o) for o in orders))  # one shape for every contribution
        padded = np.zeros((size, width), np.float32)
        padded[:len(mine)] = mine
        gathered = self._gather(padded, np.zeros_like(padded))

        features = np.empty((n, width), np.float32)
        for r, order in enumerate(orders):
            start = position[r] * size
            features[order] = gathered[start:start + len(order)]
        if cache is not None and self.rank == 0:
            missed = [i for s in shares for i in s]
            cache.store(variant, [hashes[i] for i in missed], features[missed])
        if progress is not None:
            progress(n - len(shares[self.rank]))  # this worker's own share reported itself
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


def workers_for(dist: Distribution | None) -> Workers | None:
    """The ``Workers`` of a multi-worker run with more than one worker, else None."""
    if dist is None or dist.name != "multiworker":
        return None
    workers = Workers(dist.strategy)
    return workers if workers.count > 1 else None


def record(split_features: SplitFeatures, forward: ReplicaForward | None) -> dict[str, Any]:
    """The run record's counts for one split: extracted and cached images, and under
    several workers or replicas how many each of them extracted."""
    counts: dict[str, Any] = {"extracted": split_features.extracted, "cached": split_features.cached}
    if split_features.by_worker is not None:
        counts["by_worker"] = list(split_features.by_worker)
    if forward is not None:
        counts["by_replica"] = forward.take_rows()
    return counts
