"""Several photos at once: the page's field and POST /api/predict/several answer each photo in
the order sent, each with its own error if it has one, from one submission to the batcher."""

from __future__ import annotations

import io
import re

import pytest

from .support import hidden_value, read_csrf_token

BROKEN = b"\x89PNG\r\n\x1a\nnot really"


def post_several(client, photos: list[bytes], query: str = ""):
    """POST the photos to the API, one `files` part each."""
    files = [(io.BytesIO(data), f"photo{index}.png") for index, data in enumerate(photos)]
    return client.post(f"/api/predict/several{query}", data={"files": files})


def test_each_photo_gets_its_answer_or_its_own_error_in_the_order_sent(client, png_pictures):
    answer = post_several(client, [png_pictures["mod0"], BROKEN, png_pictures["rocker1"], b""])
    assert answer.status_code == 200
    results = answer.get_json()["results"]
    assert [result.get("label") for result in results] == ["mod", None, "rocker", None]
    assert results[1]["status"] == 400 and "could not be read as an image" in results[1]["error"]
    assert results[3]["status"] == 400 and "empty" in results[3]["error"]
    # the same answers as one photo at a time
    alone = client.post(
        "/api/predict", data={"file": (io.BytesIO(png_pictures["rocker1"]), "photo.png")}
    ).get_json()
    assert results[2]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)
    assert set(results[2]) == set(alone)


def test_the_flags_apply_to_every_photo(client, png_pictures):
    answer = post_several(
        client, [png_pictures["mod1"], png_pictures["rocker2"]], "?thumbnail=1&explain=1"
    )
    for result in answer.get_json()["results"]:
        assert result["thumbnail"].startswith("data:image/jpeg;base64,")
        assert result["heatmap"].startswith("data:image/jpeg;base64,")


@pytest.mark.parametrize(
    ("send", "words"),
    [
        (lambda c, p: c.post("/api/predict/several"), "No photos were sent"),
        (
            lambda c, p: c.post(
                "/api/predict/several", data={"file": (io.BytesIO(p["mod0"]), "a.png")}
            ),
            "No photos were sent",
        ),
        (lambda c, p: post_several(c, [p["mod0"]] * 3), "3 photos were sent, and at most 2"),
    ],
)
def test_a_request_without_photos_or_with_too_many_is_refused_with_a_sentence(
    make_app, png_pictures, send, words
):
    client = make_app(MAX_FILES=2).test_client()
    answer = send(client, png_pictures)
    assert answer.status_code == 400 and words in answer.get_json()["error"]


def test_photos_sent_together_share_one_forward_pass(make_app, png_pictures):
    # no waiting for company: they share the pass because they are queued together
    app = make_app(MAX_WAIT_MS=0, MAX_BATCH_SIZE=8)
    service = app.extensions["seafront.model"]
    batcher = service._loaded[1]
    sizes = []
    run_batch = batcher._run_batch
    batcher._run_batch = lambda items: sizes.append(len(items)) or run_batch(items)
    photos = [png_pictures[name] for name in ("mod0", "mod1", "rocker0", "rocker1", "rocker2")]
    assert post_several(app.test_client(), photos).status_code == 200
    assert sizes == [5]


# --- the page without JavaScript ------------------------------------------------------------


def post_page(client, photos: list[bytes]):
    """Post the page's form with several photos in its one file field."""
    token = read_csrf_token(client.get("/").get_data(as_text=True))
    files = [(io.BytesIO(data), f"photo{index}.png") for index, data in enumerate(photos)]
    return client.post("/", data={"csrf_token": token, "file": files})


def result_section(html: str) -> str:
    """The page's result section (not the <template>s that the script fills)."""
    return html[html.index('<section id="result"') : html.index('<template id="result-template"')]


def test_the_page_shows_a_card_per_photo_in_order_with_the_broken_ones_error(
    make_app, png_pictures
):
    client = make_app().test_client()
    answer = post_page(client, [png_pictures["rocker0"], BROKEN, png_pictures["mod2"]])
    assert answer.status_code == 302
    html = client.get("/").get_data(as_text=True)
    section = result_section(html)
    assert re.findall(r'class="[^"]*\bresult-caption(?!-)[^"]*">([^<]+)<', section) == [
        "Photo 1 of 3",
        "Photo 2 of 3",
        "Photo 3 of 3",
    ]
    assert re.findall(r'<p class="result-label[^"]*">([^<]+)</p>', section) == ["rocker", "mod"]
    assert "could not be read as an image" in section
    assert section.count("That picture belongs to") == 2
    assert html.count("That picture belongs to") == 2  # not flashed as well
    assert "<title>2 results" not in html and "<title>3 results" in html


def test_why_on_one_card_of_several_shows_them_all_again_with_its_heat_map(make_app, png_pictures):
    client = make_app().test_client()
    post_page(client, [png_pictures["mod0"], png_pictures["rocker0"]])
    html = client.get("/").get_data(as_text=True)
    second = re.findall(r'name="result" value="([^"]+)"', result_section(html))[2]
    answer = client.post(
        "/why", data={"csrf_token": hidden_value(html, "csrf_token"), "result": second}
    )
    assert answer.headers["Location"] == f"/#why-{second}"
    section = result_section(client.get("/").get_data(as_text=True))
    assert section.count('class="result-card card') + section.count("result-card shadow") == 2
    assert f'<figure class="result-why mb-0" id="why-{second}">' in section


@pytest.mark.parametrize(
    ("photos", "max_files", "words"),
    [
        ([BROKEN, b""], 10, "Photo 1 of 2: "),
        ([b"x"] * 3, 2, "3 photos were sent, and at most 2"),
    ],
)
def test_the_page_says_what_was_wrong_beside_the_field_when_no_photo_could_be_classified(
    make_app, photos, max_files, words
):
    answer = post_page(make_app(MAX_FILES=max_files).test_client(), photos)
    assert answer.status_code == 400
    assert words in answer.get_data(as_text=True) and "invalid-feedback" in answer.get_data(
        as_text=True
    )
