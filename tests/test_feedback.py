"""Feedback ("Wrong? It is a ..."): the photo is kept as uploads/feedback/<label>/<uuid>.jpg,
on click only."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from fastai.data.transforms import get_image_files, parent_label
from PIL import Image

from webapp.feedback import FeedbackLabelError, save_feedback

from .imagemaker import encode
from .support import hidden_value, result_page

JSON = {"Accept": "application/json"}


def saved(tmp_path: Path) -> list[Path]:
    """The feedback photos on disk (make_app's UPLOAD_FOLDER is tmp_path/uploads)."""
    return sorted((tmp_path / "uploads" / "feedback").glob("**/*.*"))


def send_file(client, data: bytes, label: str, token: str | None = "read", filename="p.jpg"):
    """Feedback as the page's script sends it: the photo again, the label, the CSRF token."""
    fields = {"label": label, "file": (io.BytesIO(data), filename)}
    if token == "read":
        token = hidden_value(client.get("/").get_data(as_text=True), "csrf_token")
    if token:
        fields["csrf_token"] = token
    return client.post("/feedback", data=fields, headers=JSON, content_type="multipart/form-data")


def test_without_javascript_the_button_keeps_the_photo_under_its_class(
    make_app, pictures, png_pictures, tmp_path
):
    client = make_app().test_client()
    html = result_page(client, png_pictures["mod0"])
    assert saved(tmp_path) == []  # nothing is written before the click
    answer = client.post(
        "/feedback",
        data={
            "csrf_token": hidden_value(html, "csrf_token"),
            "result": hidden_value(html, "result"),
            "label": "rocker",
        },
    )
    assert answer.status_code == 302
    [path] = saved(tmp_path)
    assert path.parent == tmp_path / "uploads" / "feedback" / "rocker"
    assert re.fullmatch(r"[0-9a-f]{32}\.jpg", path.name)
    with Image.open(path) as photo:
        assert photo.format == "JPEG" and photo.size == pictures["mod0"].size
    page = client.get("/").get_data(as_text=True)
    assert "kept as an example of rocker" in page and "You said it is a rocker." in page


def test_with_javascript_the_photo_sent_again_is_kept_without_its_metadata(
    make_app, pictures, tmp_path
):
    client = make_app().test_client()
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # camera maker; phones add the location the same way
    exif[0x0112] = 6  # stored sideways: the kept photo is upright
    sideways = pictures["rocker1"].transpose(Image.Transpose.ROTATE_90)
    answer = send_file(client, encode(sideways, "JPEG", exif=exif, quality=95), "mod")
    assert answer.status_code == 200
    assert answer.get_json() == {
        "saved": True,
        "label": "mod",
        "message": ("Thank you: the photo is kept as an example of mod for the next training."),
    }
    [path] = saved(tmp_path)
    assert path.parent.name == "mod"
    with Image.open(path) as photo:
        assert photo.size == pictures["rocker1"].size
        assert not photo.getexif() and b"SecretCam" not in path.read_bytes()


@pytest.mark.parametrize("javascript", [True, False], ids=["script", "plain-form"])
def test_a_large_jpeg_is_kept_at_1024_pixels_on_its_longer_side(make_app, tmp_path, javascript):
    client = make_app().test_client()
    big = encode(Image.effect_noise((3000, 2000), 40).convert("RGB"), "JPEG")
    if javascript:
        assert send_file(client, big, "mod").status_code == 200
    else:
        html = result_page(client, big)
        client.post(
            "/feedback",
            data={
                "csrf_token": hidden_value(html, "csrf_token"),
                "result": hidden_value(html, "result"),
                "label": "mod",
            },
        )
    with Image.open(saved(tmp_path)[0]) as photo:
        assert photo.size == (1024, 683)


@pytest.mark.parametrize("label", ["cat", "", "../mod", "mod/../../etc", "MOD"])
def test_only_the_models_classes_are_accepted(make_app, png_pictures, tmp_path, label):
    client = make_app().test_client()
    answer = send_file(client, png_pictures["mod0"], label)
    assert answer.status_code == 400
    assert "is not one of the model's classes (mod, rocker)" in answer.get_json()["error"]
    assert saved(tmp_path) == []


def test_feedback_needs_a_csrf_token(make_app, png_pictures, tmp_path):
    answer = send_file(make_app().test_client(), png_pictures["mod0"], "rocker", token=None)
    assert answer.status_code == 400 and "CSRF" in answer.get_data(as_text=True)
    assert saved(tmp_path) == []


@pytest.mark.parametrize(("data", "status"), [(b"not a picture", 400), (b"", 400)])
def test_a_file_that_is_not_a_picture_is_refused(make_app, tmp_path, data, status):
    answer = send_file(make_app().test_client(), data, "rocker")
    assert answer.status_code == status and "error" in answer.get_json()
    assert saved(tmp_path) == []


def test_a_result_not_kept_any_more_asks_to_upload_again(make_app, tmp_path):
    client = make_app().test_client()
    token = hidden_value(client.get("/").get_data(as_text=True), "csrf_token")
    answer = client.post(
        "/feedback", headers=JSON, data={"csrf_token": token, "result": "gone", "label": "mod"}
    )
    assert answer.status_code == 410 and "upload it again" in answer.get_json()["error"]
    assert saved(tmp_path) == []


def test_feedback_can_be_turned_off(make_app, png_pictures, tmp_path):
    client = make_app(FEEDBACK=False).test_client()
    html = result_page(client, png_pictures["mod0"])
    assert "Wrong? It is a" not in html and "feedback-form" not in html
    assert send_file(client, png_pictures["mod0"], "rocker").status_code == 404
    assert saved(tmp_path) == []


def test_the_oldest_feedback_goes_when_the_cap_is_reached(make_app, png_pictures, tmp_path):
    client = make_app(FEEDBACK_MAX_FILES=2).test_client()
    kept = []
    for picture, label in (("mod0", "rocker"), ("mod1", "rocker"), ("rocker0", "mod")):
        assert send_file(client, png_pictures[picture], label).status_code == 200
        kept.append(set(saved(tmp_path)))
    first = next(iter(kept[0]))
    assert len(saved(tmp_path)) == 2 and first not in saved(tmp_path)


def test_the_folders_are_class_folders_that_fastai_reads_as_labels(
    make_app, png_pictures, tmp_path
):
    client = make_app().test_client()
    for picture, label in (("mod0", "rocker"), ("rocker0", "mod"), ("rocker1", "mod")):
        send_file(client, png_pictures[picture], label)
    files = get_image_files(tmp_path / "uploads" / "feedback")
    assert sorted(parent_label(file) for file in files) == ["mod", "mod", "rocker"]


@pytest.mark.parametrize("label", ["..", ".", "a/b", "a\\b", ""])
def test_a_class_that_cannot_be_a_folder_name_is_never_written(make_app, tmp_path, label):
    with make_app().app_context(), pytest.raises(FeedbackLabelError):
        save_feedback(Image.new("RGB", (8, 8)), label)
    assert not (tmp_path / "uploads").exists()
