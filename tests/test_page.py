"""The upload page: a Bootstrap 5 form with CSRF, post/redirect/get, errors next to the field."""

from __future__ import annotations

import io

import pytest

from .support import read_csrf_token


def post_form(client, token: str | None, data: bytes | None, filename: str = "photo.png"):
    """Submit the upload form as a browser would."""
    fields = {} if token is None else {"csrf_token": token}
    if data is not None:
        fields["file"] = (io.BytesIO(data), filename)
    return client.post("/", data=fields, content_type="multipart/form-data")


@pytest.mark.parametrize("path", ["/", "/upload"])
def test_page_shows_the_form_with_a_csrf_token(client, path):
    page = client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'type="file"' in html and 'accept="image/*"' in html
    assert read_csrf_token(html)
    assert "Is it mod or rocker?" in html


def test_bootstrap_is_served_locally(client):
    html = client.get("/").get_data(as_text=True)
    assert "/bootstrap/static/css/bootstrap.min.css" in html
    assert "cdn" not in html.lower()
    assert client.get("/bootstrap/static/css/bootstrap.min.css").status_code == 200


@pytest.mark.parametrize(("picture", "label"), [("mod0", "mod"), ("rocker2", "rocker")])
def test_a_valid_post_flashes_the_answer_and_redirects_back(
    client, csrf_token, png_pictures, picture, label
):
    answer = post_form(client, csrf_token, png_pictures[picture])
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    assert f"That picture belongs to {label} (" in html and "% confident)" in html


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (None, 400, "Choose a photo to upload."),
        (b"not a picture", 400, "could not be read as an image"),
        (b"", 400, "The upload is empty"),
    ],
)
def test_invalid_input_rerenders_the_form_with_the_error_next_to_the_field(
    client, csrf_token, data, status, words
):
    answer = post_form(client, csrf_token, data)
    html = answer.get_data(as_text=True)
    assert answer.status_code == status
    assert words in html and "invalid-feedback" in html
    assert 'type="file"' in html


def test_a_form_post_without_a_csrf_token_is_refused(client, png_pictures):
    answer = post_form(client, None, png_pictures["mod0"])
    assert answer.status_code == 400
    assert "CSRF" in answer.get_data(as_text=True)
