"""Helpers for tests that use the upload page as a browser without JavaScript would."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from .conftest import read_csrf_token

DATA_URL = re.compile(r'data:image/jpeg;base64,([A-Za-z0-9+/=]+)')


def upload(client, data: bytes, field: str = "file", filename: str = "photo.png"):
    """Read the page's CSRF token and post the form with `data` in `field`."""
    token = read_csrf_token(client.get("/").get_data(as_text=True))
    return client.post("/", data={"csrf_token": token, field: (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def result_page(client, data: bytes) -> str:
    """Upload `data` and follow the redirect: the page that shows the result."""
    answer = upload(client, data)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client.get("/").get_data(as_text=True)


def hidden_value(html: str, name: str) -> str:
    """The value of the first hidden input called `name` (as the page renders it)."""
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden input {name!r} in the page"
    return match.group(1)


def decode_data_url(url: str) -> Image.Image:
    """The picture inside a JPEG data: URL."""
    match = DATA_URL.fullmatch(url)
    assert match, f"not a JPEG data: URL: {url[:40]}..."
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def image_src(html: str, css_class: str) -> str | None:
    """The src of the first <img> with `css_class`, or None when it has none."""
    tag = re.search(rf'<img class="{css_class}[^"]*"[^>]*>', html)
    assert tag, f"no <img class={css_class!r}> in the page"
    src = re.search(r'src="([^"]+)"', tag.group(0))
    return src.group(1) if src else None
