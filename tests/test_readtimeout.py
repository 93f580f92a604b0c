"""The request read deadline: a slow or silent client gets end-of-stream, not a thread forever."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from webapp import readtimeout
from webapp.readtimeout import DeadlineSocket, ReadTimeoutWorker, worker_class


@pytest.fixture
def pair():
    """A connected pair: the server's end as a DeadlineSocket (0.3 s), the client's plain."""
    server_end, client_end = socket.socketpair()
    server_end.setblocking(False)  # as gunicorn hands it over
    adopted = DeadlineSocket.adopt(server_end, read_timeout=0.3)
    adopted.setblocking(True)  # as gunicorn's pool thread does before reading
    yield adopted, client_end
    adopted.close()
    client_end.close()


def trickle(client: socket.socket, stop: threading.Event, every: float = 0.05) -> None:
    """Send one byte every `every` seconds: never idle long, never finished."""
    while not stop.is_set():
        try:
            client.send(b"x")
        except OSError:
            return
        time.sleep(every)


def test_data_that_arrives_in_time_is_read(pair):
    server_end, client_end = pair
    client_end.sendall(b"GET / HTTP/1.1\r\n")
    assert server_end.recv(100) == b"GET / HTTP/1.1\r\n"


def test_a_silent_client_reads_as_closed_after_the_deadline(pair, caplog):
    server_end, _ = pair
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="webapp.readtimeout"):
        assert server_end.recv(100) == b""
    assert 0.25 < time.monotonic() - started < 2
    assert "did not arrive within 0.3 s (SEAFRONT_READ_TIMEOUT)" in caplog.text


def test_a_trickling_client_is_cut_off_at_the_deadline_not_kept_alive_by_each_byte(pair):
    server_end, client_end = pair
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(client_end, stop))
    sender.start()
    try:
        started, received = time.monotonic(), b""
        while chunk := server_end.recv(100):
            received += chunk
        assert 0.25 < time.monotonic() - started < 2 and received
    finally:
        stop.set()
        sender.join()


def test_once_expired_the_connection_stays_closed_for_later_requests(pair):
    server_end, client_end = pair
    assert server_end.recv(100) == b""
    server_end.new_request()
    client_end.sendall(b"more")
    assert server_end.recv(100) == b""


def test_each_request_on_a_kept_alive_connection_gets_its_own_deadline(pair):
    server_end, client_end = pair
    for _ in range(3):
        client_end.sendall(b"ping")
        assert server_end.recv(100) == b"ping"
        time.sleep(0.2)  # 0.6 s in all: longer than one deadline
        server_end.new_request()
    client_end.sendall(b"last")
    assert server_end.recv(100) == b"last"


def test_recv_into_obeys_the_deadline_too(pair):
    server_end, _ = pair
    assert server_end.recv_into(bytearray(10)) == 0


def test_a_client_that_stops_reading_the_answer_is_treated_as_gone(pair):
    server_end, _ = pair
    with pytest.raises(BrokenPipeError):
        server_end.sendall(bytes(50_000_000))  # far more than the socket buffers hold


def test_the_worker_class_carries_its_timeout():
    cls = worker_class(2.5)
    assert issubclass(cls, ReadTimeoutWorker) and cls.read_timeout == 2.5
    with pytest.raises(ValueError):
        worker_class(0)


def test_the_default_timeout_is_a_minute():
    assert readtimeout.DEFAULT_READ_TIMEOUT == 60
