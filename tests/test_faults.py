"""Faults over real HTTP against gunicorn: slow and vanishing clients, a killed worker, a model
file replaced while serving. Marked `load`: run with `pytest -m load`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from webapp import settings

from .support import LiveServer, wait_until

pytestmark = [pytest.mark.load, pytest.mark.timeout(180)]

READ_TIMEOUT = 2.0
THREADS = 2


@pytest.fixture(scope="module")
def narrow_server(model_path, tmp_path_factory):
    """One worker with two threads and a 2 s read timeout: easy to fill with slow clients."""
    server = LiveServer(
        model_path,
        tmp_path_factory.mktemp("narrow"),
        "--threads",
        str(THREADS),
        "--read-timeout",
        str(READ_TIMEOUT),
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_workers(model_path, tmp_path_factory):
    """Two workers serving their own copy of the model (the tests replace and break it), each
    looking for a new file every 0.25 s."""
    folder = tmp_path_factory.mktemp("two_workers")
    copy = folder / "models" / "export.pkl"
    copy.parent.mkdir()
    shutil.copyfile(model_path, copy)
    server = LiveServer(
        copy,
        folder,
        "--workers",
        "2",
        "--threads",
        "4",
        env={"SEAFRONT_MODEL_RELOAD_INTERVAL": "0.25"},
    )
    server.model = copy
    try:
        yield server.wait_ready(timeout=120)
    finally:
        server.stop()


def raw_post_start(server: LiveServer, body_length: int, sent: bytes) -> socket.socket:
    """Open a connection and send the headers of an image POST and the first bytes of its body."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    connection.sendall(
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: image/png\r\nContent-Length: %d\r\n\r\n" % body_length + sent
    )
    return connection


def timed_predict(server: LiveServer, data: bytes) -> tuple[int, float]:
    """POST `data` as a raw PNG body: status and seconds taken."""
    started = time.monotonic()
    answer = requests.post(
        f"{server.url}/api/predict", data=data, headers={"Content-Type": "image/png"}, timeout=60
    )
    return answer.status_code, time.monotonic() - started


def read_answer(connection: socket.socket) -> bytes:
    """Whatever the server sends before closing (or the 30 s socket timeout)."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def test_clients_that_stall_or_trickle_hold_a_thread_no_longer_than_the_read_timeout(
    narrow_server, png_pictures
):
    image = png_pictures["mod0"]
    stalled = [raw_post_start(narrow_server, len(image), image[:100]) for _ in range(THREADS)]
    headers_only = socket.create_connection(("127.0.0.1", narrow_server.port), timeout=30)
    headers_only.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
    trickler = raw_post_start(narrow_server, len(image), b"")
    stop = threading.Event()

    def trickle():
        for byte in image:
            if stop.wait(0.2):
                return
            try:
                trickler.send(bytes([byte]))
            except OSError:
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        time.sleep(0.3)  # every thread is now held by a slow client, with more queued
        status, seconds = timed_predict(narrow_server, image)
        assert status == 200
        # queued behind two rounds of slow clients at most, each cut off at the read timeout
        assert seconds < 2 * READ_TIMEOUT + 3, seconds
        for connection in stalled:
            assert read_answer(connection).startswith(b"HTTP/1.1 400"), "stalled body not cut"
        assert read_answer(trickler).startswith(b"HTTP/1.1 400"), "trickled body not cut"
        assert read_answer(headers_only) == b""  # never a request: the connection is dropped
    finally:
        stop.set()
        sender.join()
        for connection in [*stalled, headers_only, trickler]:
            connection.close()
    assert "Gave up on a request from 127.0.0.1" in narrow_server.log()
    assert "Traceback" not in narrow_server.log()


def test_clients_that_disconnect_mid_upload_block_nobody(narrow_server, png_pictures):
    image = png_pictures["rocker0"]
    for _ in range(3 * THREADS):
        raw_post_start(narrow_server, len(image), image[: len(image) // 2]).close()
    status, seconds = timed_predict(narrow_server, image)
    # had they held the threads, it would have queued behind three rounds of read timeouts
    assert status == 200 and seconds < 2 * READ_TIMEOUT, seconds
    assert "Traceback" not in narrow_server.log()


def worker_pids(server: LiveServer) -> set[int]:
    """The gunicorn worker processes under the server's master."""
    return {child.pid for child in psutil.Process(server.process.pid).children()}


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(two_workers, png_pictures):
    before = worker_pids(two_workers)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(victim).wait(timeout=10)
    # the surviving worker answers every request while the master boots a replacement
    for name in ["mod0", "rocker0", "mod1", "rocker1"] * 3:
        status, _ = timed_predict(two_workers, png_pictures[name])
        assert status == 200
    deadline = time.monotonic() + 90
    while len(worker_pids(two_workers) - {victim}) < 2:
        assert time.monotonic() < deadline, "no replacement worker"
        time.sleep(0.5)
    assert victim not in worker_pids(two_workers)
    # the replacement has loaded the model (a later test counts on both workers serving it)
    replacement = (worker_pids(two_workers) - before).pop()
    wait_until(
        lambda: f"[{replacement}] classifier.service: Loaded" in two_workers.log(),
        90,
        message="the replacement worker never loaded the model",
    )
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda name: timed_predict(two_workers, png_pictures[name])[0],
                list(png_pictures) * 4,
            )
        )
    assert statuses == [200] * len(statuses)


def predicted_labels(server: LiveServer, data: bytes, count: int) -> list[str]:
    """`count` predictions of `data`, in parallel (so both workers answer some); 200s only."""

    def predict(_) -> str:
        answer = requests.post(
            f"{server.url}/api/predict",
            data=data,
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["label"]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(predict, range(count)))


def logged_by(server: LiveServer, words: str, since: int = 0) -> list[int]:
    """The pid of each worker log line with `words` (a regular expression) after character
    `since` of the log, one per line."""
    log = server.log()[since:]
    return [int(pid) for pid in re.findall(rf"\[(\d+)\] [\w.]+: .*{words}", log)]


def wait_until_all_logged(server: LiveServer, pids: set[int], words: str, since: int) -> None:
    """Wait until every worker in `pids` has logged `words` after character `since` of the log,
    with no prediction to prompt it."""
    wait_until(
        lambda: pids <= set(logged_by(server, words, since)),
        60,
        every=0.1,
        message=lambda: (
            f"workers {pids - set(logged_by(server, words, since))} never logged {words!r}"
        ),
    )


def move_into_place(target: Path, make: Callable[[Path], object]) -> None:
    """Let `make` create a file beside `target`, then rename it over `target` in one step."""
    staging = target.with_name(f".{target.name}.new")
    make(staging)
    os.replace(staging, target)


def write_card_for(model: Path, source: Path) -> None:
    """A model card beside `model` that records the sha256 of `source`."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    card = json.dumps({"name": source.parent.name, "sha256": digest})
    move_into_place(model.with_suffix(".json"), lambda staging: staging.write_text(card))


def test_a_replaced_model_is_served_without_a_restart_or_a_prediction_and_a_broken_one_is_refused(
    two_workers, renamed_model_path, png_pictures
):
    pids = worker_pids(two_workers)
    mark = len(two_workers.log())
    # as the README says: the card first, then the export renamed into place
    write_card_for(two_workers.model, renamed_model_path)
    move_into_place(two_workers.model, lambda staging: shutil.copyfile(renamed_model_path, staging))
    # each worker looks on its own timer: no prediction is sent until both have logged the swap
    wait_until_all_logged(two_workers, pids, "Reloaded .*classes punk, teddy", mark)
    health = requests.get(f"{two_workers.url}/healthz", timeout=10).json()
    assert health["classes"] == ["punk", "teddy"]
    assert predicted_labels(two_workers, png_pictures["mod0"], 8) == ["punk"] * 8
    model_page = requests.get(f"{two_workers.url}/model", timeout=10).text
    assert renamed_model_path.parent.name in model_page and 'id="card-problem"' not in model_page

    mark = len(two_workers.log())
    two_workers.model.write_bytes(b"half a file")  # a broken copy, in place
    wait_until_all_logged(two_workers, pids, "Kept serving the previous model", mark)
    assert predicted_labels(two_workers, png_pictures["mod0"], 8) == ["punk"] * 8
    assert "is not a loadable fastai export" in two_workers.log()
    assert worker_pids(two_workers) == pids  # no restart


def sparse_file_over_the_cap(staging: Path) -> None:
    """A regular file one byte over SEAFRONT_MODEL_MAX_BYTES that takes no disk."""
    with staging.open("wb") as file:
        file.truncate(settings.default("MODEL_MAX_BYTES") + 1)


HOSTILE = {
    "is a FIFO (named pipe)": os.mkfifo,
    "which is a character device": lambda staging: os.symlink("/dev/zero", staging),
    "which does not exist": lambda staging: os.symlink(staging.with_name("nowhere"), staging),
    "over the limit of": sparse_file_over_the_cap,
}


def test_a_fifo_a_device_a_dangling_link_or_a_huge_file_is_refused_once_per_worker(
    two_workers, model_path, renamed_model_path, png_pictures
):
    pids = worker_pids(two_workers)
    write_card_for(two_workers.model, renamed_model_path)  # a card for another file, from before
    mark = len(two_workers.log())
    for words, make in HOSTILE.items():
        move_into_place(two_workers.model, make)
        wait_until_all_logged(two_workers, pids, f"could not be loaded.*{re.escape(words)}", mark)
        assert set(predicted_labels(two_workers, png_pictures["mod0"], 4)) <= {"mod", "punk"}
    # `cp other/export.pkl models/export.pkl`: newer than the card, so the card is stale
    two_workers.model.unlink()  # the sparse file goes first: cp writes a new, regular one
    shutil.copyfile(model_path, two_workers.model)
    wait_until_all_logged(two_workers, pids, "Reloaded .*classes mod, rocker", mark)
    stale = "without its model card.*describes another file"
    wait_until_all_logged(two_workers, pids, stale, mark)
    assert predicted_labels(two_workers, png_pictures["mod0"], 8) == ["mod"] * 8
    model_page = requests.get(f"{two_workers.url}/model", timeout=10).text
    assert 'id="card-problem"' in model_page and "describes another file" in model_page
    for words in HOSTILE:
        refused = logged_by(two_workers, f"could not be loaded.*{re.escape(words)}", mark)
        assert sorted(refused) == sorted(pids), f"{words!r} was not logged once per worker"
    assert worker_pids(two_workers) == pids
    assert "Traceback" not in two_workers.log()
