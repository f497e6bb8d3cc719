"""Micro-batching: concurrent requests' images gathered into one model call, which costs far
less than one per image; past ``max_queue`` images a request is refused at once (503)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np


class QueueFull(Exception):
    """The batcher holds ``max_queue`` images already; ``retry_after`` is a guess in seconds."""

    def __init__(self, waiting: int, limit: int, retry_after: int) -> None:
        self.waiting, self.limit, self.retry_after = waiting, limit, retry_after
        super().__init__(f"{waiting} images are waiting for the model (queue limit {limit})")


@dataclass
class _Item:
    images: np.ndarray
    future: asyncio.Future


@dataclass
class BatchStats:
    """Counters for /health: model calls, images predicted, largest batch, recent speed."""

    batches: int = 0
    images: int = 0
    largest: int = 0
    # Images per second of model time, smoothed over recent batches (for Retry-After).
    rate: float = 0.0
    sizes: list[int] = field(default_factory=list)  # the last few batch sizes

    def add(self, n: int, seconds: float) -> None:
        self.batches += 1
        self.images += n
        self.largest = max(self.largest, n)
        self.sizes = (self.sizes + [n])[-20:]
        now = n / max(seconds, 1e-6)
        self.rate = now if self.rate == 0 else 0.8 * self.rate + 0.2 * now


class MicroBatcher:
    """``await batcher.predict(images)`` -> the model's outputs, one model call per gathered batch.

    ``predict``: ``float32 [n, h, w, 3] -> [n, outputs]`` (a ``Predictor.predict_batch``: probabilities,
    then any known score),
    always called from one thread (a TFLite interpreter is not thread-safe).
    ``max_batch=1`` turns gathering off (the benchmark's baseline)."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], *, max_batch: int = 32,
                 window_ms: float = 5.0, max_queue: int = 256) -> None:
        if max_batch < 1 or max_queue < 1 or window_ms < 0:
            raise ValueError(f"max_batch {max_batch} and max_queue {max_queue} must be >= 1 and "
                             f"window_ms {window_ms} >= 0")
        self._predict = predict
        self.max_batch, self.window, self.max_queue = max_batch, window_ms / 1000.0, max_queue
        self.stats = BatchStats()
        self.waiting = 0  # images submitted and not yet handed to the model
        self.coming = 0  # requests being read or decoded, that will submit soon (incoming())
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue()  # a fresh one for each start()
        self._carry: _Item | None = None  # taken from the queue but did not fit the last batch
        self._worker: asyncio.Task | None = None
        self._stopping = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clf-model")

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="clf-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker (requests still waiting get their answer)."""
        self._stopping = True
        if self._worker is not None:
            await self.queue.put(None)
            await self._worker
            self._worker = None
        self._thread.shutdown(wait=True)

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Wrap a request's reading and decoding: batches wait for company only while such requests exist."""
        self.coming += 1
        try:
            yield
        finally:
            self.coming -= 1

    def _call(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self._predict(parts[0] if len(parts) == 1 else np.concatenate(parts)))

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained, at the recent model speed (at least 1)."""
        return max(1, math.ceil(self.waiting / (self.stats.rate or 1.0)))

    def check_room(self, n: int = 1) -> None:
        """Raise ``QueueFull`` when ``n`` more images would pass ``max_queue``."""
        if self.waiting + n > self.max_queue:
            raise QueueFull(self.waiting, self.max_queue, self.retry_after())

    async def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for ``images`` (float32 ``[n, h, w, 3]``), batched with others'."""
        if self._worker is None or self._worker.done() or self._stopping:
            raise RuntimeError("the batcher is not running (start() not called, or stopping)")
        self.check_room(len(images))
        item = _Item(np.asarray(images, np.float32), asyncio.get_running_loop().create_future())
        self.waiting += len(item.images)
        self.queue.put_nowait(item)
        return await item.future

    async def _next(self, timeout: float | None) -> _Item | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self.queue.get()
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout <= 0:
                raise TimeoutError from None
            return await asyncio.wait_for(self.queue.get(), timeout)

    async def _gather(self, first: _Item) -> list[_Item]:
        """``first`` and whatever joins it within the window, up to ``max_batch`` images."""
        batch, n = [first], len(first.images)
        deadline = time.monotonic() + self.window
        while n < self.max_batch:
            if self.coming == 0 and self._carry is None and self.queue.empty():
                break  # nobody else is on the way: waiting would only add latency
            try:
                item = await self._next(deadline - time.monotonic())
            except TimeoutError:
                break
            if item is None:  # stop() was called: hand the sentinel back for the main loop
                self.queue.put_nowait(None)
                break
            if n + len(item.images) > self.max_batch:
                self._carry = item  # starts the next batch instead
                break
            batch.append(item)
            n += len(item.images)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            if first is None:  # stop(): everything submitted before it has been answered
                return
            batch = await self._gather(first)
            self.waiting -= sum(len(i.images) for i in batch)
            # A client that hung up has cancelled its future: its images are skipped.
            batch = [i for i in batch if not i.future.done()]
            if not batch:
                continue
            n = sum(len(i.images) for i in batch)
            started = time.perf_counter()
            try:
                # Joined in the model's thread: copying a batch's pixels would hold up the event loop.
                probs = await loop.run_in_executor(self._thread, self._call, [i.images for i in batch])
                if probs.shape[0] != n:
                    raise RuntimeError(f"the model returned {probs.shape[0]} rows for {n} images")
            except Exception as exc:  # every waiting request gets the error, none hangs
                for i in batch:
                    if not i.future.done():
                        i.future.set_exception(exc)
                continue
            self.stats.add(n, time.perf_counter() - started)
            ends = np.cumsum([len(i.images) for i in batch])[:-1]
            for i, rows in zip(batch, np.split(probs, ends)):
                if not i.future.done():
                    i.future.set_result(rows)
