"""What every page says and links: the title from the model's classes, the favicon, commands
shown as code, no "no model card" sentence without a model."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from webapp import create_app


@pytest.fixture
def empty_client(tmp_path):
    """A client of an app whose model file does not exist."""
    app = create_app(
        {
            "TESTING": True,
            "MODEL_PATH": str(tmp_path / "models" / "export.pkl"),
            "INSTANCE_PATH": str(tmp_path / "instance"),
        }
    )
    return app.test_client()


@pytest.mark.parametrize(
    ("path", "title"), [("/", "Is it mod or rocker?"), ("/model", "The model")]
)
def test_the_tab_title_is_the_pages_own_from_the_models_classes(client, path, title):
    html = client.get(path).get_data(as_text=True)
    assert re.search(r"<title>([^<]*)</title>", html).group(1) == f"{title} · brighton-seafront"
    assert "Mod or rocker?" not in html


def test_without_a_model_the_title_asks_no_question_of_classes(empty_client):
    html = empty_client.get("/").get_data(as_text=True)
    assert "<title>Please upload your file · brighton-seafront</title>" in html


@pytest.mark.parametrize("path", ["/", "/model", "/nowhere"])
def test_every_page_links_the_favicon_that_is_served(client, path):
    html = client.get(path).get_data(as_text=True)
    href = re.search(r'<link rel="icon" href="([^"]+)"', html).group(1)
    for url in (href, "/favicon.ico"):
        answer = client.get(url)
        assert answer.status_code == 200
        icon = Image.open(io.BytesIO(answer.get_data()))
        assert icon.format == "ICO" and (32, 32) in icon.info["sizes"]


def test_commands_in_a_sentence_from_the_model_layer_are_shown_as_code(empty_client):
    from .support import read_csrf_token

    token = read_csrf_token(empty_client.get("/").get_data(as_text=True))
    html = empty_client.post(
        "/", data={"csrf_token": token, "file": (io.BytesIO(b"x"), "a.png")}
    ).get_data(as_text=True)
    assert "<code>python train.py demo</code>" in html
    assert "`" not in html[html.index("<main") :]


def test_the_model_page_without_a_model_does_not_speak_of_a_missing_card(empty_client):
    html = empty_client.get("/model").get_data(as_text=True)
    assert "No model is loaded" in html and "has no model card" not in html
