"""An honest "not sure": below SEAFRONT_MIN_CONFIDENCE the page names no class and the API says
`"sure": false`; the probabilities are always there. Off by default."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from .imagemaker import encode
from .support import result_page

# neither red above blue nor blue above red: the tiny model puts it near 50/50
AMBIGUOUS = encode(Image.new("RGB", (64, 64), (0, 0, 0)))


def predict(client, data: bytes) -> dict:
    """The API's answer for `data`."""
    return client.post("/api/predict", data={"file": (io.BytesIO(data), "photo.png")}).get_json()


@pytest.mark.parametrize(
    ("threshold", "picture", "sure"),
    [
        (0.9, "ambiguous", False),
        (0.9, "mod0", True),
        (0.0, "ambiguous", True),  # off: the likeliest class is always named
    ],
)
def test_the_api_says_whether_the_model_is_sure_and_always_gives_the_probabilities(
    make_app, png_pictures, threshold, picture, sure
):
    client = make_app(MIN_CONFIDENCE=threshold).test_client()
    answer = predict(client, AMBIGUOUS if picture == "ambiguous" else png_pictures[picture])
    assert answer["sure"] is sure
    assert set(answer["probabilities"]) == {"mod", "rocker"}
    assert answer["label"] in ("mod", "rocker")  # the likeliest class, as before


def test_the_default_threshold_is_off():
    from webapp.settings import default

    assert default("MIN_CONFIDENCE") == 0.0


def test_the_page_says_not_sure_instead_of_naming_a_class_and_offers_every_class(make_app):
    html = result_page(make_app(MIN_CONFIDENCE=0.9).test_client(), AMBIGUOUS)
    section = html[
        html.index('<section id="result"') : html.index('<template id="result-template"')
    ]
    assert re.search(r'<p class="result-label[^"]*result-unsure">Not sure</p>', section)
    assert "The model is not sure what this is: no class reaches the 90% it needs" in section
    assert "That picture belongs to" not in html
    assert len(re.findall(r"<meter ", section)) == 2  # the probabilities are still shown
    # "What is it?": every class is offered, the likeliest too
    assert "What is it? It is a …" in section
    assert re.findall(r'class="btn btn-outline-secondary feedback-button">(\w+)<', section) == [
        "mod",
        "rocker",
    ]
    assert "<title>Not sure: the result" in html


def test_several_photos_each_say_whether_the_model_is_sure(make_app, png_pictures):
    client = make_app(MIN_CONFIDENCE=0.9).test_client()
    files = [(io.BytesIO(data), "p.png") for data in (AMBIGUOUS, png_pictures["rocker0"])]
    results = client.post("/api/predict/several", data={"files": files}).get_json()["results"]
    assert [result["sure"] for result in results] == [False, True]
