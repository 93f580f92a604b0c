"""One error policy: each error raised on purpose has one status, JSON or page by one rule, and
a request that waits for the model past its deadline gets 504 and is dropped unrun."""

from __future__ import annotations

import io
import threading

import pytest

from classifier.errors import (
    DeadlineExceededError,
    DecoderBusyError,
    EmptyImageError,
    ExplainError,
    ImageTooComplexError,
    ImageTooLargeError,
    NoModelError,
    UnreadableImageError,
    UnsupportedImageError,
)
from webapp.errors import RequestError, status_of
from webapp.feedback import FeedbackLabelError
from webapp.uploads import NoFileError

from .support import read_csrf_token


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (EmptyImageError("x"), 400),
        (UnreadableImageError("x"), 400),
        (NoFileError("x"), 400),
        (RequestError("x"), 400),
        (FeedbackLabelError("x"), 400),
        (ImageTooLargeError("x"), 413),
        (UnsupportedImageError("x"), 415),
        (ExplainError("x"), 501),
        (NoModelError("x"), 503),
        (DecoderBusyError("x"), 503),
        (ImageTooComplexError("x"), 400),
        (DeadlineExceededError("x"), 504),
        (RuntimeError("x"), 500),
    ],
)
def test_each_error_has_one_status(error, status):
    assert status_of(error) == status


@pytest.mark.parametrize(
    ("accept", "json"),
    [("application/json", True), ("text/html", False), ("*/*", False), (None, False)],
)
def test_outside_the_api_the_accept_header_chooses_json_or_a_page(client, accept, json):
    headers = {"Accept": accept} if accept else {}
    answer = client.post("/feedback", data={"label": "mod"}, headers=headers)  # no CSRF token
    assert answer.status_code == 400
    if json:
        assert "form expired" in answer.get_json()["error"]
    else:
        assert answer.mimetype == "text/html" and "form expired" in answer.get_data(as_text=True)


def test_api_errors_are_json_whatever_the_client_accepts(client):
    answer = client.post("/api/predict", data=b"", headers={"Accept": "text/html"})
    assert answer.status_code == 400 and "No image was sent" in answer.get_json()["error"]


@pytest.fixture
def stalled_app(make_app):
    """An app whose model thread is held busy until the test lets it go (deadline 0.2 s)."""
    app = make_app(REQUEST_TIMEOUT=0.2)
    release, forward_passes = threading.Event(), []
    service = app.extensions["seafront.model"]
    classifier, batcher = service._loaded
    real = classifier.predict_batch
    classifier.predict_batch = lambda items: forward_passes.append(len(items)) or real(items)
    blocker = batcher.call(lambda: release.wait(timeout=30))
    yield app, forward_passes
    release.set()
    blocker.result(timeout=30)


def test_a_request_that_waits_past_its_deadline_gets_504_and_is_never_run(
    stalled_app, png_pictures
):
    app, forward_passes = stalled_app
    client = app.test_client()
    answer = client.post("/api/predict", data=png_pictures["mod0"], content_type="image/png")
    assert answer.status_code == 504
    assert "did not answer within 0.2 s" in answer.get_json()["error"]
    assert forward_passes == []


def test_the_page_shows_the_504_sentence_beside_the_form(stalled_app, png_pictures):
    app, _ = stalled_app
    client = app.test_client()
    token = read_csrf_token(client.get("/").get_data(as_text=True))
    upload = {"csrf_token": token, "file": (io.BytesIO(png_pictures["mod0"]), "photo.png")}
    answer = client.post("/", data=upload, content_type="multipart/form-data")
    assert answer.status_code == 504
    assert "did not answer within 0.2 s" in answer.get_data(as_text=True)
