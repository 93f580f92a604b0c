"""Dynamic batching: requests that arrive while the model is busy share the next forward pass."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Generic, TypeVar

from .errors import DeadlineExceededError
from .observer import ServiceObserver

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")
CallResult = TypeVar("CallResult")


class _Call:
    """A function to run on the batcher's thread between batches (see DynamicBatcher.call)."""

    def __init__(self, function: Callable[[], object]):
        self.function = function


class _Job(Generic[Item]):
    """One queued item (or call), the Future its answer goes to, and when nobody waits any more."""

    __slots__ = ("deadline", "future", "item")

    def __init__(self, item: Item | _Call, future: Future, deadline: float | None):
        self.item, self.future, self.deadline = item, future, deadline

    def expired(self, now: float) -> bool:
        """True when the job's deadline (time.monotonic) has passed."""
        return self.deadline is not None and now >= self.deadline


class BatcherClosedError(RuntimeError):
    """The batcher was closed (the model is being replaced or the server is stopping)."""


class DynamicBatcher(Generic[Item, Result]):
    """One thread runs `run_batch` on up to `max_batch_size` queued items at a time.

    Every job may carry a deadline: a job still queued when its deadline passes is answered with
    DeadlineExceededError and never run, and so is one whose caller cancelled its Future (as
    LitServe's collate_requests does: work nobody waits for is never done).

    It waits for company only when company is coming: a batch waits, at most `max_wait_s`,
    until it holds as many items as were in the batcher (queued or running) at once during the
    previous batch. So a lone client never waits, and 8 clients share full batches of 8.
    Without the wait, 8 clients in a closed loop split into two groups of 4 that take turns
    for ever: smaller batches, and each group's decoding competes for the CPU with the other
    group's forward pass.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Result]],
        max_batch_size: int = 8,
        max_wait_s: float = 0.0,
        name: str = "batcher",
        observer: ServiceObserver | None = None,
    ):
        self._run_batch = run_batch
        self._observer = observer or ServiceObserver()
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait_s = max(0.0, max_wait_s)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        # submit and close take turns, so no item can be queued behind the stop marker
        self._lock = threading.Lock()
        self._pending = 0  # items submitted and not yet answered
        self._peak = 0  # the most pending at once since the current batch was collected
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item, deadline: float | None = None) -> Future:
        """Queue one item; the Future gets its result, or the exception its run raised.

        `deadline` (a time.monotonic() value): past it, the item is dropped unrun.
        """
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the model is being replaced; send the request again")
            self._pending += 1
            self._peak = max(self._peak, self._pending)
            self._queue.put(_Job(item, future, deadline))
            self._observer.queue_depth(self._pending)
        return future

    def submit_many(self, items: list[Item], deadline: float | None = None) -> Future:
        """Queue several items at once, so they share forward passes (as many as fit in
        `max_batch_size`); one Future gets their results in order, or the first exception.

        They are queued under the lock that `_collect` takes, so the batch that starts with
        the first of them finds the others already queued. Cancelling the Future drops those
        still queued.
        """
        futures: list[Future] = [Future() for _ in items]
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the model is being replaced; send the request again")
            self._pending += len(items)
            self._peak = max(self._peak, self._pending)
            for item, future in zip(items, futures, strict=True):
                self._queue.put(_Job(item, future, deadline))
        return _gathered(futures)

    def call(
        self, function: Callable[[], CallResult], deadline: float | None = None
    ) -> Future[CallResult]:
        """Run `function` on the batcher's thread, alone, between batches; a Future of its result.

        For the model's other work (loading it onto the device, warm-up, explanations): with
        every torch computation on this one thread, the process has one OpenMP thread team.
        A second team (any other thread that runs a parallel torch operation) makes GNU OpenMP
        stop spinning between parallel regions once there are more of its threads than cores:
        on this project's 2-core machine a resnet34 forward then took 35-60% longer.
        """
        future: Future[CallResult] = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the model is being replaced; send the request again")
            self._queue.put(_Job(_Call(function), future, deadline))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job, whatever else is queued, and those still expected (see the class)."""
        with self._lock:
            expected = min(self.max_batch_size, self._peak)
            self._peak = self._pending
        jobs, stop = [first], False
        deadline = time.monotonic() + self.max_wait_s
        while len(jobs) < self.max_batch_size:
            remaining = deadline - time.monotonic() if len(jobs) < expected else 0.0
            try:
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
            if isinstance(job.item, _Call):
                break  # run what is collected so far, then the call
        return jobs, stop

    def _loop(self) -> None:
        """Take batches off the queue until closed."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = ([first], False) if isinstance(first.item, _Call) else self._collect(first)
            now = time.monotonic()
            calls = [job for job in jobs if isinstance(job.item, _Call) and self._wanted(job, now)]
            items = [
                job for job in jobs if not isinstance(job.item, _Call) and self._wanted(job, now)
            ]
            if items:
                self._run(items)
            for call in calls:
                self._call(call)
            if stop:
                return

    def _wanted(self, job: _Job, now: float) -> bool:
        """Claim `job` for running; False (and the job answered) if it expired or was cancelled."""
        if job.expired(now):
            self._answer(
                job,
                error=DeadlineExceededError(
                    "The request waited too long for the model and was dropped: the server is "
                    "busy; try again in a moment."
                ),
                counted=not isinstance(job.item, _Call),
            )
            return False
        if not job.future.set_running_or_notify_cancel():  # its caller gave up on it
            if not isinstance(job.item, _Call):
                with self._lock:
                    self._pending -= 1
                    self._observer.queue_depth(self._pending)
            return False
        return True

    def _run(self, jobs: list[_Job]) -> None:
        """Run one batch; if it fails, run its items one by one so one bad item fails alone."""
        started = time.perf_counter()
        try:
            results = self._run_batch([job.item for job in jobs])  # type: ignore[misc]
        except Exception as error:  # isolate the failing item below
            if len(jobs) == 1:
                log.exception("Prediction failed")
                self._answer(jobs[0], error=error)
                return
            for job in jobs:
                self._run([job])
            return
        self._observer.batch_ran(len(jobs), time.perf_counter() - started)
        for job, result in zip(jobs, results, strict=True):
            self._answer(job, result)

    @staticmethod
    def _call(job: _Job) -> None:
        """Run one call and settle its Future."""
        call = job.item
        assert isinstance(call, _Call)
        try:
            result = call.function()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    def _answer(
        self, job: _Job, result=None, error: BaseException | None = None, counted: bool = True
    ) -> None:
        """Settle one item's Future; it stops counting as pending first, so that a client that
        sends its next item at once is not mistaken for company."""
        if counted:
            with self._lock:
                self._pending -= 1
                self._observer.queue_depth(self._pending)
        try:
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)
        except InvalidStateError:  # an expired job its caller cancelled meanwhile
            pass


def _gathered(futures: list[Future]) -> Future:
    """One Future of the results of `futures`, in order (or of the first exception among them);
    cancelling it cancels them."""
    gathered: Future = Future()
    if not futures:
        gathered.set_result([])
        return gathered
    remaining = [len(futures)]
    lock = threading.Lock()

    def settle(_: Future) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] or gathered.done():
                return
        failed = [f for f in futures if not f.cancelled() and f.exception() is not None]
        try:
            if failed:
                gathered.set_exception(failed[0].exception())
            elif any(f.cancelled() for f in futures):
                gathered.cancel()
            else:
                gathered.set_result([f.result() for f in futures])
        except InvalidStateError:  # cancelled by its caller meanwhile
            pass

    def cancel_all(outer: Future) -> None:
        if outer.cancelled():
            for future in futures:
                future.cancel()

    gathered.add_done_callback(cancel_all)
    for future in futures:
        future.add_done_callback(settle)
    return gathered
