"""The result: photo shown back, label, sentence, sorted bars, "why?"; also without JavaScript."""

from __future__ import annotations

import io
import re

import pytest
from flask import render_template_string

from webapp.result_store import ResultStore
from webapp.results import THUMBNAIL_SIDE, Result, top_bars

from .support import decode_data_url, hidden_value, image_src, result_page, upload


def meters(html: str) -> list[tuple[str, float]]:
    """(class, value) of each confidence bar, in page order."""
    rows = re.findall(
        r'<label class="bar-name[^"]*" for="bar-[\w-]+">([^<]*)</label>\s*'
        r'<meter [^>]*value="([0-9.]+)"',
        html,
    )
    return [(label, float(value)) for label, value in rows]


def result_section(html: str) -> str:
    """The page's result section (not the <template> that the script fills)."""
    return html[html.index('<section id="result"') : html.index('<template id="result-template"')]


@pytest.mark.parametrize(("picture", "label"), [("mod1", "mod"), ("rocker0", "rocker")])
def test_without_javascript_the_redirect_shows_photo_label_sentence_and_bars(
    make_app, pictures, png_pictures, picture, label
):
    html = result_page(make_app().test_client(), png_pictures[picture])
    section = result_section(html)
    thumbnail = decode_data_url(image_src(section, "result-photo"))
    assert thumbnail.format == "JPEG" and thumbnail.size == pictures[picture].size
    assert re.search(rf'<p class="result-label display-4[^"]*">{label}</p>', section)
    assert f"That picture belongs to {label} (" in section
    bars = meters(section)
    assert [name for name, _ in bars] == [label, "rocker" if label == "mod" else "mod"]
    assert bars[0][1] >= bars[1][1] and sum(value for _, value in bars) == pytest.approx(1, 1e-3)


def test_the_sentence_is_said_once_not_twice(make_app, png_pictures):
    html = result_page(make_app().test_client(), png_pictures["mod0"])
    assert html.count("That picture belongs to mod (") == 1


def test_a_large_photo_comes_back_as_a_small_thumbnail(make_app, pictures):
    big = pictures["mod0"].resize((1600, 1200))
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    html = result_page(make_app().test_client(), buffer.getvalue())
    thumbnail = decode_data_url(image_src(result_section(html), "result-photo"))
    assert thumbnail.size == (THUMBNAIL_SIDE, THUMBNAIL_SIDE * 3 // 4)


def test_the_result_is_shown_once_then_the_page_is_the_empty_form(make_app, png_pictures):
    client = make_app().test_client()
    result_page(client, png_pictures["mod0"])
    again = client.get("/").get_data(as_text=True)
    assert '<section id="result" class="result mb-5" aria-label="Results" hidden>' in again


def test_a_photo_from_the_camera_field_is_classified(make_app, png_pictures):
    client = make_app().test_client()
    assert upload(client, png_pictures["rocker1"], field="camera").status_code == 302
    assert "That picture belongs to rocker (" in client.get("/").get_data(as_text=True)


def test_the_camera_field_asks_phones_for_the_camera(client):
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'<input accept="image/\*" capture="environment"[^>]*name="camera"', html)


def test_why_without_javascript_lays_the_heat_map_over_the_photo(make_app, png_pictures):
    client = make_app().test_client()
    html = result_page(client, png_pictures["rocker2"])
    assert image_src(result_section(html), "result-heatmap") is None
    answer = client.post(
        "/why",
        data={
            "csrf_token": hidden_value(html, "csrf_token"),
            "result": hidden_value(html, "result"),
        },
    )
    result_id = hidden_value(html, "result")
    assert answer.status_code == 302 and answer.headers["Location"] == f"/#why-{result_id}"
    section = result_section(client.get("/").get_data(as_text=True))
    photo = decode_data_url(image_src(section, "result-photo"))
    heatmap = decode_data_url(image_src(section, "result-heatmap"))
    assert heatmap.size == photo.size
    assert f'<figure class="result-why mb-0" id="why-{result_id}">' in section  # not hidden


@pytest.mark.parametrize("result_id", ["", "nonsense", "someone-elses"])
def test_why_for_a_result_not_kept_for_this_session_says_to_upload_again(
    make_app, png_pictures, result_id
):
    app = make_app()
    if result_id == "someone-elses":
        result_id = hidden_value(result_page(app.test_client(), png_pictures["mod0"]), "result")
    client = app.test_client()
    token = hidden_value(client.get("/").get_data(as_text=True), "csrf_token")
    answer = client.post("/why", data={"csrf_token": token, "result": result_id})
    assert answer.status_code == 302
    html = client.get("/").get_data(as_text=True)
    assert "no longer kept in memory" in html and "data:image/jpeg" not in html


def test_why_needs_a_csrf_token(make_app, png_pictures):
    client = make_app().test_client()
    html = result_page(client, png_pictures["mod0"])
    assert client.post("/why", data={"result": hidden_value(html, "result")}).status_code == 400


ANSWER = {"label", "confidence", "probabilities", "sure", "device"}


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("", ANSWER),
        ("?thumbnail=1", {*ANSWER, "thumbnail"}),
        ("?explain=1", {*ANSWER, "heatmap"}),
        ("?explain=true&thumbnail=yes", {*ANSWER, "heatmap", "thumbnail"}),
        ("?explain=0", ANSWER),
    ],
)
def test_the_api_adds_thumbnail_and_heat_map_only_when_asked(client, png_pictures, query, keys):
    answer = client.post(
        f"/api/predict{query}", data={"file": (io.BytesIO(png_pictures["mod2"]), "photo.png")}
    )
    assert answer.status_code == 200 and set(answer.get_json()) == keys


@pytest.mark.parametrize("picture", ["mod0", "rocker2"])  # 40x90 and 74x68: two shapes
def test_the_apis_heat_map_has_the_photos_aspect_ratio(client, pictures, png_pictures, picture):
    answer = client.post(
        "/api/predict?explain=1&thumbnail=1",
        data={"file": (io.BytesIO(png_pictures[picture]), "photo.png")},
    )
    body = answer.get_json()
    heatmap = decode_data_url(body["heatmap"])
    assert heatmap.size == decode_data_url(body["thumbnail"]).size == pictures[picture].size


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("no conv layer", "no convolutional layer"),
        ("2x2 last feature map", "sees only a 2x2 grid of its 8 px input"),
    ],
)
def test_a_model_that_cannot_be_explained_gets_no_why_button_but_a_sentence_and_a_501(
    make_app, png_pictures, monkeypatch, coarse_model_path, model, words
):
    if model == "no conv layer":
        monkeypatch.setattr("classifier.explain.explained_layer", lambda model: None)
        app = make_app()
    else:
        app = make_app(MODEL_PATH=str(coarse_model_path))
    client = app.test_client()
    html = result_page(client, png_pictures["mod0"])
    assert "why-form" not in html and "Why? Show where" not in html
    section = result_section(html)
    assert 'No "Why?" for this model: ' in section and words in section
    answer = client.post(
        "/api/predict?explain=1", data={"file": (io.BytesIO(png_pictures["mod0"]), "photo.png")}
    )
    assert answer.status_code == 501 and words in answer.get_json()["error"]


def test_a_model_whose_last_map_is_4x4_or_more_is_explained(shared_app):
    service = shared_app.extensions["seafront.model"]
    assert service.explainable and service.why_not_explainable == ""  # the tiny model: 8x8


def test_with_many_classes_the_top_five_are_shown_most_probable_first():
    probabilities = {
        f"class{index}": value
        for index, value in enumerate([0.02, 0.30, 0.05, 0.25, 0.01, 0.20, 0.07, 0.10])
    }
    bars = top_bars(probabilities)
    assert [bar.label for bar in bars] == ["class1", "class3", "class5", "class7", "class6"]
    assert [bar.percent for bar in bars] == ["30.0%", "25.0%", "20.0%", "10.0%", "7.0%"]


@pytest.mark.parametrize(("count", "buttons", "select"), [(2, 1, False), (10, 0, True)])
def test_feedback_offers_every_other_class_as_a_button_or_with_many_as_a_list(
    shared_app, count, buttons, select
):
    classes = [f"c{index}" for index in range(count)]
    result = Result(
        label="c0",
        confidence=0.9,
        class_count=count,
        bars=top_bars({label: 1 / count for label in classes}),
    )
    template = (
        '{% from "_result.html" import result_card %}'
        '{{ result_card(result, classes, "", true, "k") }}'
    )
    with shared_app.test_request_context():
        html = render_template_string(template, result=result, classes=classes)
    visible = re.findall(r'<button type="submit" name="label" value="(\w+)"[^>]*>', html)
    hidden = re.findall(r'<button type="submit" name="label" value="(\w+)"[^>]*hidden>', html)
    assert len(visible) - len(hidden) == buttons and hidden == (["c0"] if buttons else [])
    assert ('<select class="form-select" id="feedback-label-k" name="label">' in html) == select
    assert ('<option value="c0" disabled>' in html) == select
    assert len(meters(html)) == min(5, count)
    assert (f'The top 5 of <span class="bars-total">{count}</span> classes' in html) == (
        count > 5 and 'class="bars-more small text-body-secondary">' in html
    )


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_result_store_keeps_at_most_its_size_dropping_the_oldest():
    store = ResultStore(max_entries=3, max_age_s=60, clock=FakeClock())
    results = [Result(label="mod", confidence=1.0, bars=[], class_count=2) for _ in range(5)]
    for result in results:
        store.put(result)
    assert len(store) == 3
    assert [store.get(result.id) for result in results] == [None, None, *results[2:]]


def test_the_result_store_forgets_results_older_than_its_age():
    clock = FakeClock()
    store = ResultStore(max_entries=10, max_age_s=60, clock=clock)
    old, new = (Result(label="mod", confidence=1.0, bars=[], class_count=2) for _ in range(2))
    store.put(old)
    clock.now += 45
    store.put(new)
    clock.now += 30
    assert store.get(old.id) is None and store.get(new.id) is new
    clock.now += 31
    assert store.get(new.id) is None and len(store) == 0


def pages(make_app, png_pictures) -> dict[str, str]:
    """Every page the site has, as HTML: form, result, model card, error."""
    client = make_app().test_client()
    return {
        "form": client.get("/").get_data(as_text=True),
        "result": result_page(client, png_pictures["mod0"]),
        "model": client.get("/model").get_data(as_text=True),
        "error": client.get("/nowhere").get_data(as_text=True),
    }


@pytest.mark.parametrize("name", ["form", "result", "model", "error"])
def test_pages_have_no_inline_script_or_style_and_only_local_assets(make_app, png_pictures, name):
    html = pages(make_app, png_pictures)[name]
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.findall(r"<style|\sstyle=|\son[a-z]+=", html, flags=re.IGNORECASE) == []
    addresses = re.findall(r'\s(?:src|href|action)="([^"]*)"', html)
    assert addresses and all(
        address.startswith(("/", "#", "data:image/jpeg;base64,")) and not address.startswith("//")
        for address in addresses
    )
