"""The upload page in real headless chromium: choose, drop or paste, result, why, feedback.

The app runs as the README starts it (`python application.py`). Every request the page makes is
routed through the test: one to any other host fails the test, and each page is served under a
strict Content-Security-Policy (no 'unsafe-inline'), so inline script or style would show up as a
console error. UPDATE_DOCS_SCREENSHOTS=1 refreshes the README's screenshots in docs/.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from .support import (
    STRICT_CSP,
    LiveServer,
    Watched,
    classify,
    natural_size,
    open_watched,
    picture_png,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

DOCS = Path(__file__).resolve().parents[1] / "docs"
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture(scope="module")
def ui_server(model_path, tmp_path_factory) -> Iterator[LiveServer]:
    """`python application.py` with the tiny model; feedback goes to its own uploads folder."""
    workdir = tmp_path_factory.mktemp("ui_live")
    server = LiveServer(
        model_path, workdir, env={"SEAFRONT_UPLOAD_FOLDER": str(workdir / "uploads")}
    )
    server.uploads = workdir / "uploads"
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def open_page(browser, ui_server):
    """Open pages in fresh browser contexts, watched (see support.Watched)."""
    contexts = []

    def open_(path: str = "/", **options) -> Watched:
        context, watched = open_watched(browser, ui_server.url, path, STRICT_CSP, **options)
        contexts.append(context)
        return watched

    yield open_
    for context in contexts:
        context.close()


def feedback_files(server: LiveServer, label: str) -> set[Path]:
    """The feedback photos kept for `label`."""
    return set((server.uploads / "feedback" / label).glob("*.jpg"))


def save_screenshot(page, path: Path, name: str) -> None:
    """Screenshot into `path`; with UPDATE_DOCS_SCREENSHOTS=1 also, small, into docs/."""
    # the whole page, through a viewport as tall as the page: chromium's full-page capture
    # drops the touch emulation, which would hide the phone's "Take a photo" button
    width = page.viewport_size["width"]
    page.set_viewport_size(
        {"width": width, "height": page.evaluate("document.documentElement.scrollHeight")}
    )
    page.screenshot(path=path, scale="css")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        Image.open(path).convert("RGB").quantize(128).save(DOCS / name, optimize=True)


def drop_file(page, selector: str, name: str, data: bytes, mime: str = "image/png") -> None:
    """Drop a file on `selector` as a file manager would."""
    transfer = page.evaluate_handle(
        """([name, data, mime]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [name, base64.b64encode(data).decode(), mime],
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_choose_see_photo_label_and_bars_ask_why_and_send_feedback(open_page, ui_server, tmp_path):
    watched = open_page()
    page = watched.page
    with page.expect_file_chooser() as chooser:
        page.get_by_label("Photo", exact=True).click()
    chooser.value.set_files(
        {"name": "seafront.png", "mimeType": "image/png", "buffer": picture_png("mod")}
    )
    assert page.locator("#preview").is_visible()
    assert natural_size(page.locator("#preview-image")) == (320, 240)
    assert "seafront.png" in page.locator("#preview-name").inner_text()

    classify(page)
    card = page.locator("#result .result-card")
    assert card.locator(".result-label").inner_text() == "mod"
    sentence = card.locator(".result-sentence").inner_text()
    assert sentence.startswith("That picture belongs to mod (") and sentence.endswith("confident)")
    assert page.locator("#upload-status").inner_text() == sentence  # said by the live region
    photo = card.locator(".result-photo")
    assert photo.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert natural_size(photo) == (320, 240)
    assert card.locator(".bar-name").all_inner_texts() == ["mod", "rocker"]
    values = [
        float(meter.get_attribute("value") or meter.evaluate("m => m.value"))
        for meter in card.locator(".bar-meter").all()
    ]
    assert values == sorted(values, reverse=True) and values[0] > 0.5

    card.get_by_role("button", name="Why? Show where the model looked").click()
    heatmap = card.locator(".result-heatmap")
    heatmap.wait_for(state="visible")
    page.wait_for_function(
        "() => document.querySelector('#result .result-heatmap').naturalWidth > 0"
    )
    assert natural_size(heatmap) == (320, 240)

    before = feedback_files(ui_server, "rocker")
    card.get_by_role("group", name="Wrong? It is a …").get_by_role("button", name="rocker").click()
    page.locator("#result .feedback-status").filter(has_text="Thank you").wait_for()
    assert len(feedback_files(ui_server, "rocker") - before) == 1
    assert not card.get_by_role("button", name="mod", exact=True).is_visible()  # others only

    save_screenshot(page, tmp_path / "result.png", "screenshot-result.png")
    watched.assert_clean()


def test_a_dropped_photo_is_previewed_and_classified(open_page):
    watched = open_page()
    page = watched.page
    drop_file(page, "#dropzone", "dropped.png", picture_png("rocker", seed=8))
    assert "dropped.png" in page.locator("#preview-name").inner_text()
    assert page.locator("#file").evaluate("input => input.files[0].name") == "dropped.png"
    classify(page)
    assert page.locator("#result .result-label").inner_text() == "rocker"
    watched.assert_clean()


def test_a_pasted_picture_is_previewed_and_classified(open_page):
    watched = open_page()
    page = watched.page
    page.evaluate(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "image.png", { type: "image/png" }));
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer }));
        }""",
        base64.b64encode(picture_png("mod", seed=9)).decode(),
    )
    assert "image.png" in page.locator("#preview-name").inner_text()
    classify(page)
    assert page.locator("#result .result-label").inner_text() == "mod"
    watched.assert_clean()


@pytest.mark.parametrize(
    ("name", "data", "mime", "words"),
    [
        ("notes.txt", b"just text", "text/plain", "That file is not a picture (text/plain)"),
        (
            "broken.png",
            b"\x89PNG\r\n\x1a\nnot really",
            "image/png",
            "could not be read as an image",
        ),
    ],
)
def test_a_file_that_is_not_a_photo_gets_a_sentence_in_the_alert(
    open_page, name, data, mime, words
):
    watched = open_page()
    page = watched.page
    page.locator("#file").set_input_files({"name": name, "mimeType": mime, "buffer": data})
    if mime.startswith("image/"):
        page.get_by_role("button", name="Classify").click()
    alert = page.locator("#upload-error")
    alert.filter(has_text=words).wait_for()
    assert alert.get_attribute("role") == "alert"
    assert page.locator("#result").is_hidden()
    watched.problems = [problem for problem in watched.problems if "400" not in problem]
    watched.assert_clean()


def test_without_javascript_the_plain_forms_do_it_all(open_page, ui_server):
    watched = open_page(java_script_enabled=False)
    page = watched.page
    page.locator("#file").set_input_files(
        {"name": "plain.png", "mimeType": "image/png", "buffer": picture_png("rocker", seed=11)}
    )
    with page.expect_navigation():
        page.get_by_role("button", name="Classify").click()
    card = page.locator("#result .result-card")
    assert card.locator(".result-label").inner_text() == "rocker"
    assert "That picture belongs to rocker (" in card.locator(".result-sentence").inner_text()
    assert natural_size(card.locator(".result-photo")) == (320, 240)
    assert card.locator(".bar-name").all_inner_texts() == ["rocker", "mod"]

    with page.expect_navigation():
        card.get_by_role("button", name="Why? Show where the model looked").click()
    assert natural_size(page.locator("#result .result-heatmap")) == (320, 240)

    before = feedback_files(ui_server, "mod")
    with page.expect_navigation():
        page.locator("#result").get_by_role("button", name="mod", exact=True).click()
    assert len(feedback_files(ui_server, "mod") - before) == 1
    assert "kept as an example of mod" in page.locator(".alert-success").inner_text()
    watched.assert_clean()


def test_everything_works_from_the_keyboard_with_a_visible_focus(open_page, ui_server):
    watched = open_page()
    page = watched.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.locator("#file").set_input_files(
        {"name": "keys.png", "mimeType": "image/png", "buffer": picture_png("mod", seed=12)}
    )
    page.locator("#file").focus()
    page.keyboard.press("Tab")  # "Take a photo" is hidden on a desktop: next is Classify
    assert page.evaluate("document.activeElement.id") == "submit"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.keyboard.press("Enter")
    page.locator("#result .result-label").filter(has_text="mod").wait_for()

    page.keyboard.press("Tab")
    assert "Why?" in page.evaluate("document.activeElement.textContent")
    page.keyboard.press("Enter")
    page.locator("#result .result-heatmap").wait_for(state="visible")
    before = feedback_files(ui_server, "rocker")
    page.locator("#result .feedback-button[value=rocker]").focus()
    page.keyboard.press("Space")
    page.locator("#result .feedback-status").filter(has_text="Thank you").wait_for()
    assert len(feedback_files(ui_server, "rocker") - before) == 1
    watched.assert_clean()


def test_on_a_phone_the_camera_button_shows_and_nothing_overflows(open_page, tmp_path):
    watched = open_page(**PHONE)
    page = watched.page
    camera = page.get_by_text("Take a photo")
    assert camera.is_visible()
    assert page.locator("#camera").get_attribute("capture") == "environment"
    page.locator("#file").set_input_files(
        {"name": "phone.png", "mimeType": "image/png", "buffer": picture_png("rocker", seed=13)}
    )
    classify(page)
    page.locator("#result").get_by_role("button", name="Why? Show where the model looked").click()
    page.locator("#result .result-heatmap").wait_for(state="visible")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    save_screenshot(page, tmp_path / "phone.png", "screenshot-phone.png")
    watched.assert_clean()


def test_the_model_page_loads_everything_from_this_server(open_page):
    watched = open_page("/model")
    page = watched.page
    assert page.get_by_role("heading", name="Classes").is_visible()
    assert page.locator(".model-classes li").all_inner_texts() == ["mod", "rocker"]
    watched.assert_clean()


def test_the_screenshots_in_docs_are_there_and_small():
    for name in ("screenshot-result.png", "screenshot-phone.png"):
        assert (DOCS / name).stat().st_size < 300_000
