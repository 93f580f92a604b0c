"""Faults over real HTTP against gunicorn: slow and vanishing clients, a killed worker, a model
file replaced while serving. Marked `load`: run with `pytest -m load`."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

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
    """Two workers serving their own copy of the model (the tests replace and break it)."""
    folder = tmp_path_factory.mktemp("two_workers")
    copy = folder / "models" / "export.pkl"
    copy.parent.mkdir()
    shutil.copyfile(model_path, copy)
    server = LiveServer(copy, folder, "--workers", "2", "--threads", "4")
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


def labels_until(
    server: LiveServer, data: bytes, wanted: str, in_a_row: int = 12, timeout: float = 90
) -> list[str]:
    """Predict until `in_a_row` answers in a row are `wanted` (both workers switched)."""
    labels, deadline = [], time.monotonic() + timeout
    while labels[-in_a_row:] != [wanted] * in_a_row:
        assert time.monotonic() < deadline, f"still {labels[-in_a_row:]}"
        answer = requests.post(
            f"{server.url}/api/predict",
            data=data,
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        labels.append(answer.json()["label"])
        time.sleep(0.05)
    return labels


def wait_until_reloaded(
    server: LiveServer, pids: set[int], data: bytes, words: str, timeout: float = 90
) -> None:
    """Send parallel predictions until every worker in `pids` has logged its reload."""
    deadline = time.monotonic() + timeout
    while True:
        reloaded = {
            int(pid) for pid in re.findall(rf"\[(\d+)\] [\w.]+: Reloaded .*{words}", server.log())
        }
        if pids <= reloaded:
            return
        assert time.monotonic() < deadline, f"workers {pids - reloaded} never reloaded"
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: timed_predict(server, data), range(8)))


def test_a_replaced_model_is_served_without_a_restart_and_a_broken_one_is_refused(
    two_workers, renamed_model_path, png_pictures
):
    pids = worker_pids(two_workers)
    staging = two_workers.model.with_name("export.pkl.new")
    shutil.copyfile(renamed_model_path, staging)
    os.replace(staging, two_workers.model)
    # a worker looks at the file when a prediction reaches it: keep both busy until both reload
    wait_until_reloaded(two_workers, pids, png_pictures["mod0"], "classes punk, teddy")
    labels = labels_until(two_workers, png_pictures["mod0"], "punk")
    assert set(labels) <= {"mod", "punk"}
    assert requests.get(f"{two_workers.url}/healthz", timeout=10).json()["classes"] == [
        "punk",
        "teddy",
    ]

    two_workers.model.write_bytes(b"half a file")  # a broken copy, in place
    deadline = time.monotonic() + 60
    while "Kept serving the previous model" not in two_workers.log():
        assert time.monotonic() < deadline, "the broken file was never looked at"
        status, _ = timed_predict(two_workers, png_pictures["mod0"])
        assert status == 200
        time.sleep(0.1)
    assert labels_until(two_workers, png_pictures["mod0"], "punk", in_a_row=6)
    assert "is not a loadable fastai export" in two_workers.log()
    assert worker_pids(two_workers) == pids  # no restart
