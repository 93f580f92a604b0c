"""One bounded HTTP(S) download: a byte cap, a wall-clock deadline, http(s)-only redirects.

fastai's `download_images` (through fastdownload and fastcore's `urlsave`) cannot be bounded:
it has no byte cap, its timeout applies to each socket read (a server that sends one byte a
second never times out), and urllib follows redirects to ftp://. So this module speaks HTTP
itself with the standard library's http.client, and keeps fastcore's URL quoting and headers.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import getproxies, proxy_bypass

from fastcore.net import url_default_headers, urlquote

MB = 1024 * 1024
CHUNK = 64 * 1024  # small reads, so the deadline is checked often
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
WEB_SCHEMES = ("http", "https")


class FetchError(Exception):
    """Why one URL was not saved, in a few words for the download summary."""


def _remaining(deadline: float) -> float:
    """Seconds left before `deadline`; TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each allowed only the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock, self._deadline = sock, deadline
        # the socket's own file: the socket counts it, so closing the connection (which
        # http.client does as soon as it has the headers of a last response) waits for it
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        """It is read from."""
        return True

    def readinto(self, buffer: Any) -> int | None:
        """One recv, given what is left of the deadline as its timeout."""
        # a socket timeout alone bounds each read, not their sum: set it afresh every time
        self._sock.settimeout(_remaining(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        """Close the socket's file too, so that the socket can close."""
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """A connected socket whose every read and write ends by the deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        """What http.client reads the status line, headers and body from."""
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def sendall(self, data: bytes) -> None:
        """Send the request (CPython bounds a whole sendall by the socket timeout)."""
        self._sock.settimeout(_remaining(self._deadline))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _HTTPConnection(http.client.HTTPConnection):
    """An HTTP connection that must be done by `deadline`, connect included."""

    def __init__(self, host: str, port: int | None, deadline: float):
        super().__init__(host, port, timeout=_remaining(deadline))
        self.deadline = deadline

    def connect(self) -> None:
        """Connect within the time left, then put the deadline on every read and write."""
        # CPython bounds a whole connect by the socket timeout; the name lookup before it
        # has no timeout in the standard library (bounding it would take a thread per URL)
        self.timeout = _remaining(self.deadline)
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self.deadline)


class _HTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that must be done by `deadline`, connect and handshake included."""

    def __init__(self, host: str, port: int | None, deadline: float):
        super().__init__(host, port, timeout=_remaining(deadline))
        self.deadline = deadline

    def connect(self) -> None:
        """Connect and shake hands within the time left, then bound every read and write."""
        # the connect and the TLS handshake are each bounded as a whole by the time left when
        # connecting (so a host that is slow at both can take up to twice --timeout), and
        # nothing is read after the deadline
        self.timeout = _remaining(self.deadline)
        super().connect()
        _remaining(self.deadline)
        self.sock = _DeadlineSocket(self.sock, self.deadline)


def _connect(url: str, deadline: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for `url` (through the environment's proxy, as urllib would) and the
    request target to send on it."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise FetchError("the URL has no host")
    kind = _HTTPSConnection if parts.scheme == "https" else _HTTPConnection
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = getproxies().get(parts.scheme)
    if not proxy or proxy_bypass(parts.hostname):
        return kind(parts.hostname, parts.port, deadline), target
    via = urlsplit(proxy if "//" in proxy else f"http://{proxy}")
    if parts.scheme == "http":
        return _HTTPConnection(via.hostname or "", via.port, deadline), url
    tunnel = _HTTPSConnection(via.hostname or "", via.port, deadline)
    tunnel.set_tunnel(parts.hostname, parts.port)
    return tunnel, target


def _get(url: str, deadline: float) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """The 2xx response to GET `url`, after at most MAX_REDIRECTS http(s) redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        connection, target = _connect(url, deadline)
        connection.request("GET", target, headers=url_default_headers)
        response = connection.getresponse()
        if 200 <= response.status < 300:
            return connection, response
        response.close()  # a redirect's or an error's body is never read
        connection.close()
        if response.status not in REDIRECT_STATUSES:
            raise FetchError(f"HTTP {response.status} {_phrase(response.status)}".strip())
        location = response.getheader("Location")
        if not location:
            raise FetchError(f"HTTP {response.status} redirect without a Location")
        url = urlquote(urljoin(url, location.strip()))
        if urlsplit(url).scheme not in WEB_SCHEMES:
            raise FetchError(
                f"redirected to {url[:60]}: only http and https redirects are followed"
            )
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _phrase(status: int) -> str:
    """The standard words for `status` (a server's own reason phrase can say anything)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def size_text(n: int) -> str:
    """A byte count for people: 50 GB, 20 MB, 512 KB, 900 bytes."""
    if n >= 1024 * MB:
        return f"{n / (1024 * MB):.3g} GB"
    if n >= MB:
        return f"{n / MB:.3g} MB"
    if n >= 1024:
        return f"{n / 1024:.3g} KB"
    return f"{n} bytes"


def _save(response: http.client.HTTPResponse, part: Path, max_bytes: int) -> None:
    """Write the body to `part`, refusing one over `max_bytes` before or while reading it."""
    announced = response.length  # http.client's reading of Content-Length; None if absent
    if announced is not None and announced > max_bytes:
        raise FetchError(
            f"Content-Length {size_text(announced)} is over the limit of "
            f"{size_text(max_bytes)} (--max-bytes)"
        )
    received = 0
    with part.open("wb") as out:
        while chunk := response.read(CHUNK):
            received += len(chunk)
            if received > max_bytes:
                raise FetchError(
                    f"the body grew past the limit of {size_text(max_bytes)} (--max-bytes)"
                )
            out.write(chunk)
    if announced is not None and received < announced:
        raise FetchError(f"the connection closed after {received} of {announced} bytes")


def fetch(url: str, dest: Path, *, max_bytes: int, timeout: float) -> None:
    """Save `url` to `dest` within `timeout` seconds in all and `max_bytes`, or raise
    FetchError and leave nothing behind."""
    deadline = time.monotonic() + timeout
    part = dest.with_name(dest.name + ".part")
    try:
        connection, response = _get(urlquote(url), deadline)
        try:
            _save(response, part, max_bytes)
        finally:
            connection.close()
        part.replace(dest)
    except TimeoutError:
        part.unlink(missing_ok=True)
        raise FetchError(f"not done within {timeout:g} s (--timeout)") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        part.unlink(missing_ok=True)
        raise FetchError(_describe(error)) from None
    except FetchError:
        part.unlink(missing_ok=True)
        raise


def _describe(error: Exception) -> str:
    """A few words for a network or protocol failure."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "host not found"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    detail = str(error) or type(error).__name__
    return f"{type(error).__name__}: {detail}"[:120]
