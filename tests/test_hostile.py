"""Every broken, odd or malicious upload gets 200, 400, 413 or 415 with a sentence, never a 500.

The corpus (tests/hostile.py) goes through the page's form (with a real CSRF token read from the
page), the API's multipart upload and the API's raw image body: in process, and over HTTP
against gunicorn, which must keep serving afterwards.
"""

from __future__ import annotations

import html
import io
import re

import pytest
import requests

from .hostile import HostileFile, hostile_files
from .support import read_csrf_token

CORPUS = hostile_files()
IDS = [item.name for item in CORPUS]
ALLOWED = {200, 400, 413, 415}
LEAKS = ("Traceback", 'File "', "Werkzeug Debugger", "Internal Server Error")


def assert_human_sentence(text: str) -> None:
    """A sentence a person can act on: capitalised, some words, a full stop; no internals."""
    assert re.fullmatch(r"[A-Z][^<>{}]{20,}[.!?]", text), text
    assert not any(leak in text for leak in LEAKS), text


def raw_content_type(item: HostileFile) -> str:
    """The raw API only takes image/* bodies; anything else is sent as a (lying) JPEG."""
    return item.content_type if item.content_type.startswith("image/") else "image/jpeg"


def form_feedback(page: str) -> str:
    """The error shown under the file field of the upload form."""
    match = re.search(r'class="invalid-feedback[^"]*"[^>]*>([^<]+)<', page)
    assert match, "no error next to the file field"
    return html.unescape(match.group(1)).strip()


def check_json_answer(item: HostileFile, status: int, body: dict) -> None:
    """The API's answer for `item`: its due status, a label or a sentence."""
    assert status == item.status, (item.name, status, body)
    if status == 200:
        assert body["label"] in ("mod", "rocker")
        if item.label:
            assert body["label"] == item.label, item.name
    else:
        assert set(body) == {"error"}
        assert_human_sentence(body["error"])


def check_page_answer(item: HostileFile, status: int, page: str) -> None:
    """The form's answer for `item`: the flashed result, or the error next to the field."""
    assert status == item.status, (item.name, status)
    assert not any(leak in page for leak in LEAKS)
    assert 'type="file"' in page  # still the upload page, in the site's look
    if status == 200:
        result = re.search(r"That picture belongs to (\w+) \(", page)
        assert result, "no result flashed"
        if item.label:
            assert result.group(1) == item.label, item.name
    else:
        assert_human_sentence(form_feedback(page))


def test_the_corpus_covers_every_answer_and_only_allowed_ones():
    assert {item.status for item in CORPUS} == ALLOWED
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("item", CORPUS, ids=IDS)
def test_api_multipart(client, item):
    answer = client.post(
        "/api/predict",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(item.data), item.filename, item.content_type)},
    )
    assert answer.is_json
    check_json_answer(item, answer.status_code, answer.get_json())


@pytest.mark.parametrize("item", CORPUS, ids=IDS)
def test_api_raw_body(client, item):
    answer = client.post("/api/predict", data=item.data, content_type=raw_content_type(item))
    assert answer.is_json
    check_json_answer(item, answer.status_code, answer.get_json())


@pytest.mark.parametrize("item", CORPUS, ids=IDS)
def test_form(client, csrf_token, item):
    answer = client.post(
        "/",
        content_type="multipart/form-data",
        follow_redirects=True,
        data={
            "csrf_token": csrf_token,
            "file": (io.BytesIO(item.data), item.filename, item.content_type),
        },
    )
    check_page_answer(item, answer.status_code, answer.get_data(as_text=True))


def test_the_corpus_over_http_leaves_the_server_serving(live_server, png_pictures):
    """Through gunicorn: the form (session cookie and token as a browser) and the API."""
    browser = requests.Session()
    token = read_csrf_token(browser.get(f"{live_server.url}/", timeout=30).text)
    for item in CORPUS:
        upload = {"file": (item.filename, item.data, item.content_type)}
        api = requests.post(f"{live_server.url}/api/predict", files=upload, timeout=60)
        check_json_answer(item, api.status_code, api.json())
        page = browser.post(
            f"{live_server.url}/", data={"csrf_token": token}, files=upload, timeout=60
        )
        check_page_answer(item, page.status_code, page.text)
    assert requests.get(f"{live_server.url}/healthz", timeout=10).json()["status"] == "ok"
    good = requests.post(
        f"{live_server.url}/api/predict",
        data=png_pictures["mod0"],
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert good.status_code == 200 and good.json()["label"] == "mod"
    assert "Traceback" not in live_server.log()
