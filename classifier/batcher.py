"""Dynamic batching: requests that arrive while the model is busy share the next forward pass."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")


class BatcherClosedError(RuntimeError):
    """The batcher was closed (the model is being replaced or the server is stopping)."""


class DynamicBatcher(Generic[Item, Result]):
    """One thread runs `run_batch` on up to `max_batch_size` queued items at a time.

    With `max_wait_s` 0 the thread never waits for company: it takes what is queued and goes,
    so a lone request pays nothing and a busy server still forms full batches.
    """

    def __init__(self, run_batch: Callable[[list[Item]], list[Result]],
                 max_batch_size: int = 8, max_wait_s: float = 0.0, name: str = "batcher"):
        self._run_batch = run_batch
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait_s = max(0.0, max_wait_s)
        self._queue: queue.SimpleQueue[tuple[Item, Future] | None] = queue.SimpleQueue()
        self._closed = False
        # submit and close take turns, so no item can be queued behind the stop marker
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Future:
        """Queue one item; the Future gets its result, or the exception its run raised."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the model is being replaced; send the request again")
            self._queue.put((item, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _collect(self, first: tuple[Item, Future]) -> tuple[list[tuple[Item, Future]], bool]:
        """The first job plus whatever else is queued (waiting at most max_wait_s for more)."""
        jobs, stop = [first], False
        while len(jobs) < self.max_batch_size:
            try:
                job = (self._queue.get(timeout=self.max_wait_s) if self.max_wait_s
                       else self._queue.get_nowait())
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _loop(self) -> None:
        """Take batches off the queue until closed."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            self._run(jobs)
            if stop:
                return

    def _run(self, jobs: list[tuple[Item, Future]]) -> None:
        """Run one batch; if it fails, run its items one by one so one bad item fails alone."""
        try:
            results = self._run_batch([item for item, _ in jobs])
        except Exception as error:  # noqa: BLE001 - isolate the failing item below
            if len(jobs) == 1:
                log.exception("Prediction failed")
                jobs[0][1].set_exception(error)
                return
            for job in jobs:
                self._run([job])
            return
        for (_, future), result in zip(jobs, results, strict=True):
            future.set_result(result)

