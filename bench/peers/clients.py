"""How a client asks each peer for a label, over one keep-alive http.client connection, the way
its own docs do it (curl examples); and how bench.py starts each peer.

Every sender takes the connection and a JPEG's bytes and returns the label, or raises. It counts
everything a client must do for one answer: the seed app's form post and its redirect, Gradio's
upload, call and event stream.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent
Sender = Callable[[http.client.HTTPConnection, bytes], str]


class PeerError(RuntimeError):
    """A peer answered something other than a label."""


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body with text `fields` and JPEG `files`, as `curl -F` sends."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for name, data in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request and its whole answer: status, headers (lower-case names), body."""
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def send_litserve(connection: http.client.HTTPConnection, photo: bytes) -> str:
    """POST /predict with a multipart `file` (bench/peers/litserve_app.py)."""
    body, content_type = multipart({}, {"file": photo})
    status, _, data = _exchange(
        connection, "POST", "/predict", body, {"Content-Type": content_type}
    )
    if status != 200:
        raise PeerError(f"{status}: {data[:200]!r}")
    return json.loads(data)["label"]


class SeedSession:
    """The seed app's browser: its session cookie and CSRF token, one per client."""

    TOKEN = re.compile(rb'name="csrf_token" type="hidden" value="([^"]+)"')
    ANSWER = re.compile(rb"That picture belongs to ([^<\s]+)")

    def __init__(self) -> None:
        self.cookie = ""
        self.token = ""

    def _remember(self, headers: dict[str, str]) -> None:
        cookie = headers.get("set-cookie", "")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]

    def send(self, connection: http.client.HTTPConnection, photo: bytes) -> str:
        """Post the form as a browser does, follow the redirect, read the flashed answer."""
        if not self.token:
            status, headers, page = _exchange(connection, "GET", "/upload")
            self._remember(headers)
            match = self.TOKEN.search(page)
            if status != 200 or not match:
                raise PeerError(f"no form at /upload ({status})")
            self.token = match.group(1).decode()
        body, content_type = multipart(
            {"csrf_token": self.token, "submit": "Submit"}, {"file": photo}
        )
        status, headers, data = _exchange(
            connection,
            "POST",
            "/upload",
            body,
            {"Content-Type": content_type, "Cookie": self.cookie},
        )
        self._remember(headers)
        if status != 302:
            raise PeerError(f"{status}: {data[:200]!r}")
        status, headers, page = _exchange(
            connection, "GET", "/upload", None, {"Cookie": self.cookie}
        )
        self._remember(headers)
        match = self.ANSWER.search(page)
        if status != 200 or not match:
            raise PeerError(f"no answer on the page ({status})")
        return match.group(1).decode()


def gradio_sender(api_name: str) -> Sender:
    """Upload the photo, call the endpoint, read its event stream (Gradio's curl guide)."""

    def send(connection: http.client.HTTPConnection, photo: bytes) -> str:
        body, content_type = multipart({}, {"files": photo})
        status, _, data = _exchange(
            connection, "POST", "/gradio_api/upload", body, {"Content-Type": content_type}
        )
        if status != 200:
            raise PeerError(f"upload: {status}: {data[:200]!r}")
        path = json.loads(data)[0]
        call = json.dumps({"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]})
        status, _, data = _exchange(
            connection,
            "POST",
            f"/gradio_api/call/{api_name}",
            call.encode(),
            {"Content-Type": "application/json"},
        )
        if status != 200:
            raise PeerError(f"call: {status}: {data[:200]!r}")
        event = json.loads(data)["event_id"]
        status, _, stream = _exchange(connection, "GET", f"/gradio_api/call/{api_name}/{event}")
        text = stream.decode(errors="replace")
        if status != 200 or "event: complete" not in text:
            raise PeerError(f"stream: {status}: {text[:200]!r}")
        payload = text.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0]
        return json.loads(payload)[0]["label"]

    return send


@dataclass(frozen=True)
class Peer:
    """A peer: how to start it (script and extra arguments), where it is ready, how to ask it."""

    name: str
    script: str
    args: tuple[str, ...]
    ready_path: str
    sender: Callable[[], Sender]  # a new sender per client (the seed app's has a session)

    def command(self, python: str, model: Path, port: int, workdir: Path) -> list[str]:
        """The command line that serves `model` on 127.0.0.1:`port`."""
        extra = [str(workdir)] if self.script == "seed_app.py" else []
        return [python, str(PEERS_DIR / self.script), str(model), str(port), *extra, *self.args]


PEERS = (
    Peer(
        "the seed app (Flask dev server, learn.predict, shared upload file)",
        "seed_app.py",
        (),
        "/upload",
        lambda: SeedSession().send,
    ),
    Peer(
        "Gradio Interface, default settings",
        "gradio_app.py",
        (),
        "/gradio_api/info",
        lambda: gradio_sender("classify_image"),
    ),
    Peer(
        "Gradio Interface, batch=True, max_batch_size=8",
        "gradio_app.py",
        ("--batch",),
        "/gradio_api/info",
        lambda: gradio_sender("classify_images"),
    ),
    Peer(
        "LitServe, max_batch_size=8",
        "litserve_app.py",
        (),
        "/health",
        lambda: send_litserve,
    ),
)
