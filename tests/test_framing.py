"""Broken or oversized request framing gets a 4xx with a sentence, never a 500 or a silent cut."""

from __future__ import annotations

import io
import json
import socket

import numpy as np
import pytest

from .imagemaker import encode, make_picture
from .support import post_file


def raw_request(port: int, head: str, body: bytes) -> tuple[int, str]:
    """Send `head` and `body` as they are, and return the status and the body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        try:
            connection.sendall(head.encode() + b"\r\n" + body)
            connection.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the whole body was sent: read its answer
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1].decode(errors="replace")


def chunked_head(path: str, content_type: str = "image/png") -> str:
    """A POST whose body is sent chunked."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        "Accept: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    )


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"-3\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef0\r\n\r\n"],
    ids=["size-zz", "size-minus-3", "missing-crlf"],
)
@pytest.mark.parametrize("path", ["/api/predict", "/", "/feedback"])
def test_a_malformed_chunked_body_gets_400_with_a_sentence(live_server, path, body):
    status, text = raw_request(live_server.port, chunked_head(path), body)
    assert status == 400
    assert "Traceback" not in text


def test_a_chunked_body_over_the_limit_gets_413_not_a_cut(live_server):
    photo = encode(make_picture("mod", np.random.default_rng(0)))
    padding = photo + b"\0" * (21 * 1024 * 1024)  # a PNG with 21 MB after its end
    step = 1 << 20
    parts = (padding[start : start + step] for start in range(0, len(padding), step))
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in parts)
    status, text = raw_request(
        live_server.port, chunked_head("/api/predict"), chunks + b"0\r\n\r\n"
    )
    assert status == 413
    assert "limit" in json.loads(text)["error"]


def test_a_raw_octet_stream_body_is_taken_as_the_image(client):
    photo = encode(make_picture("mod", np.random.default_rng(0)))
    response = client.post("/api/predict", data=photo, content_type="application/octet-stream")
    assert response.status_code == 200


def test_get_on_the_api_says_it_takes_post(client):
    response = client.get("/api/predict")
    assert response.status_code == 405
    assert "POST" in response.get_json()["error"]


def test_too_many_form_parts_names_the_form_limit_not_the_upload_size(client):
    fields = {f"f{n}": "x" for n in range(1_200)}
    fields["file"] = (io.BytesIO(b"x"), "a.png")
    response = client.post("/api/predict", data=fields, content_type="multipart/form-data")
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert "too many parts" in error and "20 MB" not in error


def test_an_ordinary_upload_still_passes(client):
    photo = encode(make_picture("mod", np.random.default_rng(0)))
    assert post_file(client, photo).status_code == 200
