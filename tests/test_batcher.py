"""Dynamic batching: requests share forward passes, a lone request never waits for company."""

from __future__ import annotations

import threading
import time

import pytest

from classifier.batcher import BatcherClosedError, DynamicBatcher
from classifier.errors import DeadlineExceededError

from .support import wait_until


class SlowModel:
    """Stands in for the model: doubles numbers, takes `seconds` a batch, records batch sizes."""

    def __init__(self, seconds: float = 0.02, fail_on: int | None = None):
        self.seconds, self.fail_on, self.sizes = seconds, fail_on, []

    def __call__(self, items: list[int]) -> list[int]:
        self.sizes.append(len(items))
        time.sleep(self.seconds)
        if self.fail_on in items:
            raise ValueError(f"cannot do {self.fail_on}")
        return [item * 2 for item in items]


@pytest.fixture
def make_batcher():
    """Batchers that are closed after the test."""
    batchers = []

    def make(model, **options) -> DynamicBatcher:
        batchers.append(DynamicBatcher(model, **options))
        return batchers[-1]

    yield make
    for batcher in batchers:
        batcher.close()


def closed_loop(batcher: DynamicBatcher, clients: int, rounds: int) -> list[int]:
    """`clients` threads, each submitting and waiting for its answer `rounds` times."""
    answers: list[int] = []

    def client(number: int) -> None:
        for round_ in range(rounds):
            answers.append(batcher.submit(number * 100 + round_).result(timeout=10))

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_each_item_gets_its_own_answer(make_batcher):
    batcher = make_batcher(SlowModel())
    answers = closed_loop(batcher, clients=6, rounds=3)
    assert sorted(answers) == sorted(2 * (n * 100 + r) for n in range(6) for r in range(3))


def test_a_lone_client_never_waits_for_company(make_batcher):
    # a minute's wait allowed, ten seconds to answer each round: a batcher that waited even once
    # for company would fail the round with TimeoutError
    model = SlowModel(seconds=0.0)
    batcher = make_batcher(model, max_wait_s=60.0)
    closed_loop(batcher, clients=1, rounds=5)
    assert model.sizes == [1] * 5


def test_eight_clients_share_full_batches():
    # with a wait that can never run out here, every batch after the first two holds all eight
    # clients until they start to stop: however loaded the machine, nobody misses a batch
    model = SlowModel(seconds=0.02)
    clients_until_each_has(DynamicBatcher(model, max_batch_size=8, max_wait_s=60.0), 8, 6)
    full = model.sizes[2:6]
    assert full == [8] * len(full) and len(full) == 4


def test_without_a_wait_eight_clients_split_into_smaller_batches(make_batcher):
    # what the wait is for: the first client's pass lets the other seven queue, and then the
    # two groups take turns, each batch smaller than eight
    model = SlowModel(seconds=0.02)
    batcher = make_batcher(model, max_batch_size=8, max_wait_s=0.0)
    closed_loop(batcher, clients=8, rounds=6)
    assert max(model.sizes[-4:]) < 8


def clients_until_each_has(batcher: DynamicBatcher, clients: int, answers: int) -> dict:
    """`clients` threads in closed loops until each has `answers` answers; then the batcher is
    closed, which ends any wait for a client that has stopped. Each request may take 10 s."""
    got: dict[int, list[int]] = {number: [] for number in range(clients)}
    reached = {number: threading.Event() for number in got}
    stop = threading.Event()

    def client(number: int) -> None:
        while not stop.is_set():
            try:
                future = batcher.submit(number * 100 + len(got[number]))
            except BatcherClosedError:
                return
            got[number].append(future.result(timeout=10))
            if len(got[number]) >= answers:
                reached[number].set()

    threads = [threading.Thread(target=client, args=(number,)) for number in got]
    for thread in threads:
        thread.start()
    assert all(event.wait(timeout=60) for event in reached.values())
    stop.set()
    batcher.close()
    for thread in threads:
        thread.join(timeout=10)
    assert all(
        values == [2 * (number * 100 + i) for i in range(len(values))]
        for number, values in got.items()
    )
    return got


def test_fewer_clients_than_a_full_batch_do_not_wait_for_the_rest():
    # a minute's wait allowed and ten seconds per request: a batcher that waited for a full
    # batch of eight would fail a request, however fast or slow the machine is
    model = SlowModel(seconds=0.01)
    clients_until_each_has(DynamicBatcher(model, max_batch_size=8, max_wait_s=60.0), 3, 5)
    assert 3 in model.sizes and max(model.sizes) == 3


def test_no_batch_is_larger_than_the_maximum(make_batcher):
    model = SlowModel(seconds=0.01)
    batcher = make_batcher(model, max_batch_size=4, max_wait_s=0.05)
    closed_loop(batcher, clients=10, rounds=3)
    assert max(model.sizes) == 4


def test_a_failing_item_fails_alone(make_batcher):
    model = SlowModel(seconds=0.05, fail_on=7)
    batcher = make_batcher(model, max_batch_size=8)
    blocker = batcher.submit(0)  # keeps the thread busy while the next three queue up
    futures = [batcher.submit(item) for item in (5, 7, 9)]
    assert blocker.result(timeout=5) == 0
    assert futures[0].result(timeout=5) == 10 and futures[2].result(timeout=5) == 18
    with pytest.raises(ValueError, match="cannot do 7"):
        futures[1].result(timeout=5)


def test_a_closed_batcher_refuses_new_items_after_finishing_queued_ones():
    batcher = DynamicBatcher(SlowModel(seconds=0.02))
    queued = [batcher.submit(item) for item in range(3)]
    batcher.close()
    assert [future.result(timeout=1) for future in queued] == [0, 2, 4]
    with pytest.raises(BatcherClosedError, match="send the request again"):
        batcher.submit(1)


def test_a_call_runs_on_the_batcher_thread_between_batches(make_batcher):
    model = SlowModel(seconds=0.05)
    batcher = make_batcher(model, max_batch_size=8)
    threads = []
    batcher.submit(1)  # the thread is busy with this one when the call arrives
    call = batcher.call(lambda: threads.append(threading.get_ident()) or len(model.sizes))
    assert call.result(timeout=5) == 1  # after the running batch, not inside it
    assert threads and threads[0] != threading.get_ident()
    assert batcher.call(threading.get_ident).result(timeout=5) == threads[0]


def test_a_failing_call_hands_its_exception_to_the_caller(make_batcher):
    batcher = make_batcher(SlowModel())

    def broken():
        raise RuntimeError("no GPU memory left")

    with pytest.raises(RuntimeError, match="no GPU memory left"):
        batcher.call(broken).result(timeout=5)
    assert batcher.submit(3).result(timeout=5) == 6  # and the batcher goes on


class GatedModel:
    """Stands in for the model: holds each batch until `gate` is set, records every item run."""

    def __init__(self):
        self.gate, self.running, self.seen = threading.Event(), threading.Event(), []

    def __call__(self, items: list[int]) -> list[int]:
        self.running.set()
        self.gate.wait(timeout=10)
        self.seen += items
        return [item * 2 for item in items]


def test_an_item_whose_deadline_passed_while_queued_is_dropped_unrun(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model)
    busy = batcher.submit(1)
    assert model.running.wait(timeout=10)
    late = batcher.submit(2, deadline=time.monotonic())  # nobody waits for it any more
    in_time = batcher.submit(3, deadline=time.monotonic() + 60)
    model.gate.set()
    assert (busy.result(timeout=10), in_time.result(timeout=10)) == (2, 6)
    with pytest.raises(DeadlineExceededError, match="waited too long"):
        late.result(timeout=10)
    assert model.seen == [1, 3]


def test_an_item_its_caller_cancelled_is_never_run(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model)
    busy = batcher.submit(1)
    assert model.running.wait(timeout=10)
    abandoned = batcher.submit(2)
    assert abandoned.cancel()
    kept = batcher.submit(3)
    model.gate.set()
    assert (busy.result(timeout=10), kept.result(timeout=10)) == (2, 6)
    assert model.seen == [1, 3]
    assert batcher.submit(4).result(timeout=10) == 8  # the count of pending items is right


def test_a_call_whose_deadline_passed_is_not_run(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model)
    batcher.submit(1)
    assert model.running.wait(timeout=10)
    ran = []
    late = batcher.call(lambda: ran.append("late"), deadline=time.monotonic())
    model.gate.set()
    with pytest.raises(DeadlineExceededError):
        late.result(timeout=10)
    assert ran == []


# --- several items from one request ----------------------------------------------------------


@pytest.mark.parametrize(("count", "max_batch_size", "sizes"), [(3, 8, [3]), (5, 2, [2, 2, 1])])
def test_items_submitted_together_share_forward_passes_and_keep_their_order(
    make_batcher, count, max_batch_size, sizes
):
    model = SlowModel(seconds=0.0)
    # no waiting for company at all: they are batched because they are queued at once
    batcher = make_batcher(model, max_batch_size=max_batch_size, max_wait_s=0.0)
    assert batcher.submit_many(list(range(count))).result(timeout=10) == [
        2 * n for n in range(count)
    ]
    assert model.sizes == sizes


def test_items_submitted_together_fail_with_the_failing_items_error(make_batcher):
    batcher = make_batcher(SlowModel(seconds=0.0, fail_on=2))
    with pytest.raises(ValueError, match="cannot do 2"):
        batcher.submit_many([1, 2, 3]).result(timeout=10)


def test_cancelling_items_submitted_together_drops_those_still_queued(make_batcher):
    model = SlowModel(seconds=0.3)
    batcher = make_batcher(model, max_batch_size=1)
    together = batcher.submit_many([1, 2, 3])
    wait_until(lambda: model.sizes)  # the first is running
    assert together.cancel()
    assert batcher.submit(9).result(timeout=10) == 18
    assert model.sizes == [1, 1]  # item 1, then item 9: items 2 and 3 never ran


def test_nothing_submitted_together_is_an_empty_answer(make_batcher):
    assert make_batcher(SlowModel()).submit_many([]).result(timeout=1) == []
