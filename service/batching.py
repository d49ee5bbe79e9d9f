"""Opportunistic micro-batching: concurrent single calls coalesced into one batched call.

A query's two heavy steps, its embedding and the exact vector search, cost less per query when
several queries go through them together (one encoder run; one matrix-matrix product instead of a
matrix-vector product per query, each of which reads every vector). Under concurrent load, callers
that arrive while batches are running queue up, and one of them runs the next batch for all of
them. With one caller at a time nothing waits: the call runs at once, alone.

Hand-over: the thread that ran a batch takes the next one off the queue and gives it to that
batch's oldest caller to run, then returns with its own result; no request is held back serving
others. One batch runs at a time (on 2 cores a second concurrent runner cost more CPU per request
than it gained in throughput: the other requests' Python work keeps the second core busy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("item", "result", "error", "done", "batch", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = False
        self.batch: list[_Slot[T, R]] | None = None  # handed over to this caller to run
        self.wake = threading.Event()


class MicroBatcher(Generic[T, R]):
    """``batcher(item)`` returns ``run([item, ...])[i]`` for its item, batching concurrent callers.

    ``run`` receives up to ``max_batch`` items in arrival order and returns one result per item.
    If it raises, every caller of that batch gets the exception; later batches still run.
    """

    def __init__(self, run: Callable[[list[T]], Sequence[R]], max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[T, R]] = []  # callers waiting while a batch runs
        self._running = False

    def __call__(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            if not self._running:  # nothing runs, so nobody is queued: run now
                self._running = True
                slot.batch = [slot]
            else:
                self._queue.append(slot)
        if slot.batch is None:
            slot.wake.wait()  # until done, or until handed a batch to run
        if slot.batch is not None:
            self._run_batch(slot.batch)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _run_batch(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = self._run([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            for s, r in zip(batch, results, strict=True):
                s.result = r
        except BaseException as exc:  # noqa: BLE001 - every caller of this batch sees the error, re-raised
            for s in batch:
                s.error = exc
        with self._lock:
            for s in batch:
                s.done, s.batch = True, None
                s.wake.set()
            if self._queue:  # the turn passes to the oldest waiter, with its batch
                following, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                following[0].batch = following
                following[0].wake.set()
            else:
                self._running = False
