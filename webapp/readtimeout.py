"""A gunicorn gthread worker that gives each request a deadline to arrive, headers and body.

gunicorn's gthread worker reads a request's headers and body in its pool threads with blocking
reads and no timeout, so a client that sends slowly (or stops sending) holds a thread for as
long as it likes; `--threads` of them and every other client waits. Here each connection's
socket gets a deadline when the first byte of a request is read: past it, reads end as if the
client had closed the connection (the app answers 400 or the connection is dropped), so a thread
is held `read_timeout` seconds at most. Writes get the same timeout per call, for clients that
stop reading the answer. Put a buffering proxy (nginx) in front to take slow clients off the
app entirely.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time

from gunicorn.workers.gthread import ThreadWorker

log = logging.getLogger(__name__)
DEFAULT_READ_TIMEOUT = 60.0


class DeadlineSocket(socket.socket):
    """A client socket whose reads for the current request end at a deadline."""

    read_timeout = DEFAULT_READ_TIMEOUT
    deadline: float | None = None  # when the current request must have arrived (monotonic)
    expired = False  # the deadline passed: every later read sees the end of the stream

    @classmethod
    def adopt(cls, plain: socket.socket, read_timeout: float) -> DeadlineSocket:
        """The same connection as `plain` (which is detached), as a DeadlineSocket."""
        blocking = plain.getblocking()
        adopted = cls(plain.family, plain.type, plain.proto, fileno=plain.detach())
        adopted.read_timeout = read_timeout
        adopted.deadline = None
        adopted.expired = False
        adopted.setblocking(blocking)
        return adopted

    def new_request(self) -> None:
        """Start the clock afresh for the next request on this connection (at its first read)."""
        self.deadline = None

    def setblocking(self, flag: bool) -> None:
        """Blocking mode, as gunicorn asks for before reading, means waits of bounded length."""
        if flag:
            self.settimeout(self.read_timeout)
        else:
            super().setblocking(False)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """socket.recv, returning b"" (end of stream) once the request's deadline has passed."""
        return self._before_deadline(super().recv, bufsize, flags)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        """socket.recv_into, reading nothing once the request's deadline has passed."""
        return self._before_deadline(super().recv_into, buffer, nbytes, flags) or 0

    def sendall(self, data, flags: int = 0) -> None:
        """socket.sendall; a client that stops reading the answer is treated as gone."""
        try:
            super().sendall(data, flags)
        except TimeoutError:
            raise BrokenPipeError(errno.EPIPE, "client stopped reading the response") from None

    def _before_deadline(self, read, *args):
        """Run one read with the time left before the deadline as its timeout."""
        timeout = self.gettimeout()
        if timeout == 0.0:  # gunicorn's own non-blocking peeks are left alone
            return read(*args)
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.read_timeout
        remaining = self.deadline - now
        if self.expired or remaining <= 0:
            return self._expire()
        super().settimeout(min(remaining, timeout) if timeout else remaining)
        try:
            return read(*args)
        except TimeoutError:
            return self._expire()
        finally:
            super().settimeout(timeout)

    def _expire(self) -> bytes:
        """Give up on this connection for good: every later read sees the end of the stream."""
        if not self.expired:
            self.expired = True
            try:
                address = self.getpeername()
            except OSError:
                address = None
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "a client"
            log.warning(
                "Gave up on a request from %s: it did not arrive within %g s "
                "(SEAFRONT_READ_TIMEOUT)",
                peer,
                self.read_timeout,
            )
        return b""


class ReadTimeoutWorker(ThreadWorker):
    """gunicorn's gthread worker, with a DeadlineSocket for every client connection.

    `gunicorn -k webapp.readtimeout.ReadTimeoutWorker` takes the timeout from SEAFRONT_READ_TIMEOUT.
    """

    read_timeout = float(os.environ.get("SEAFRONT_READ_TIMEOUT", DEFAULT_READ_TIMEOUT))

    def enqueue_req(self, conn) -> None:
        """Hand the connection to a pool thread: a new connection, or the next request on one."""
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket.adopt(conn.sock, self.read_timeout)
        conn.sock.new_request()
        super().enqueue_req(conn)


def worker_class(read_timeout: float) -> type[ReadTimeoutWorker]:
    """A ReadTimeoutWorker class whose requests must arrive within `read_timeout` seconds."""
    if read_timeout <= 0:
        raise ValueError(f"read timeout must be positive, not {read_timeout}")
    return type("ReadTimeoutWorker", (ReadTimeoutWorker,), {"read_timeout": float(read_timeout)})
