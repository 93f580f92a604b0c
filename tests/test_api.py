"""POST /api/predict and GET /healthz: JSON in every case, the right status for every error."""

from __future__ import annotations

import pytest
from PIL import Image

from .imagemaker import encode
from .support import post_file


def test_predict_answers_label_confidence_probabilities_sure_and_device(client, png_pictures):
    answer = post_file(client, png_pictures["mod0"])
    assert answer.status_code == 200
    body = answer.get_json()
    assert set(body) == {"label", "confidence", "probabilities", "sure", "device"}
    assert body["label"] == "mod" and body["device"] == "cpu"
    assert body["sure"] is True  # SEAFRONT_MIN_CONFIDENCE is off by default
    assert set(body["probabilities"]) == {"mod", "rocker"}
    assert body["confidence"] == max(body["probabilities"].values())
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["mod1", "rocker1"])
def test_a_raw_image_body_works_like_a_multipart_upload(client, png_pictures, name):
    raw = client.post("/api/predict", data=png_pictures[name], content_type="image/png")
    assert raw.get_json() == post_file(client, png_pictures[name]).get_json()


@pytest.mark.parametrize(
    ("send", "status", "words"),
    [
        (lambda c: c.post("/api/predict"), 400, "No image was sent"),
        (
            lambda c: c.post("/api/predict", data=b"{}", content_type="application/json"),
            400,
            "No image was sent",
        ),
        (lambda c: post_file(c, b""), 400, "empty"),
        (lambda c: post_file(c, b"just some text", "notes.jpg"), 400, "could not be read"),
        (
            lambda c: post_file(c, encode(Image.new("RGB", (400, 300)), "JPEG")[:2000]),
            400,
            "damaged or truncated",
        ),
        (
            lambda c: post_file(c, encode(Image.new("RGB", (32, 32)), "ICO"), "icon.png"),
            415,
            "not accepted",
        ),
        (
            lambda c: c.post("/api/predict", data=b"GIF89a-nope", content_type="image/gif"),
            400,
            "could not be read",
        ),
    ],
)
def test_bad_requests_get_json_errors_with_the_right_status(client, send, status, words):
    answer = send(client)
    assert answer.status_code == status
    assert answer.is_json and words in answer.get_json()["error"]


def test_an_upload_above_the_size_limit_gets_413(make_app, png_pictures):
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    big = encode(Image.effect_noise((200, 200), 64).convert("RGB"), "PNG")
    for answer in (
        post_file(client, big),
        client.post("/api/predict", data=big, content_type="image/png"),
    ):
        assert answer.status_code == 413
        assert "larger than the limit" in answer.get_json()["error"]


def test_the_default_size_limit_is_20_megabytes(client):
    assert client.application.config["MAX_CONTENT_LENGTH"] == 20 * 1024 * 1024


def test_api_is_exempt_from_csrf(make_app, png_pictures):
    app = make_app(WTF_CSRF_ENABLED=True)
    assert post_file(app.test_client(), png_pictures["rocker0"]).status_code == 200


def test_healthz_reports_the_model(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.get_json() == {
        "status": "ok",
        "model_loaded": True,
        "device": "cpu",
        "classes": ["mod", "rocker"],
    }


@pytest.mark.parametrize(("path", "status"), [("/api/nothing", 404), ("/api/predict", 405)])
def test_api_routing_errors_are_json(client, path, status):
    answer = client.get(path)
    assert answer.status_code == status and "error" in answer.get_json()


def camera_file(upright: Image.Image, stored: Image.Transpose, orientation: int | None) -> bytes:
    """A JPEG as a phone stores it: pixels turned by `stored`, EXIF saying how to turn them back."""
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    return encode(upright.transpose(stored), "JPEG", quality=95, exif=exif)


@pytest.mark.parametrize(
    ("stored", "orientation"),
    [
        (Image.Transpose.ROTATE_90, 6),  # portrait, phone turned left
        (Image.Transpose.ROTATE_270, 8),  # portrait, phone turned right
        (Image.Transpose.ROTATE_180, 3),  # upside down
    ],
)
def test_a_phone_photo_is_classified_upright(client, pictures, stored, orientation):
    upright = pictures["mod1"]
    reference = post_file(client, encode(upright, "JPEG", quality=95)).get_json()
    tagged = post_file(client, camera_file(upright, stored, orientation)).get_json()
    assert tagged["label"] == reference["label"] == "mod"
    assert tagged["confidence"] == pytest.approx(reference["confidence"], abs=0.02)


def test_without_its_orientation_tag_the_same_photo_reads_differently(client, pictures):
    # the check above could not fail if the model ignored orientation: this shows it does not
    untagged = camera_file(pictures["mod1"], Image.Transpose.ROTATE_180, None)
    assert post_file(client, untagged).get_json()["label"] == "rocker"
