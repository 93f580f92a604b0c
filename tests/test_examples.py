"""Examples to click: the photos saved beside the model are shown, served and classified by name
alone; without saved examples there is no section."""

from __future__ import annotations

import re

import pytest

from formats.examples import examples_folder

from .support import read_csrf_token


@pytest.fixture
def examples_app(make_app, examples_model_path):
    """An app serving the tiny model that has example photos beside it."""
    return make_app(MODEL_PATH=str(examples_model_path))


def test_without_saved_examples_the_page_has_no_examples_section(client):
    assert 'id="examples"' not in client.get("/").get_data(as_text=True)


def test_the_page_shows_each_classs_examples_as_buttons(examples_app):
    html = examples_app.test_client().get("/").get_data(as_text=True)
    section = html[html.index('<section id="examples"') : html.index('<section id="result"')]
    assert re.findall(r'name="example" value="([^"]+)"', section) == [
        "mod/0.jpg",
        "mod/1.jpg",
        "rocker/0.jpg",
        "rocker/1.jpg",
    ]
    assert re.findall(r'<img class="example-photo rounded" src="([^"]+)"', section) == [
        "/examples/mod/0.jpg",
        "/examples/mod/1.jpg",
        "/examples/rocker/0.jpg",
        "/examples/rocker/1.jpg",
    ]
    assert 'alt="Example 2 of rocker"' in section


def test_an_example_photo_is_served_as_the_file_beside_the_model(examples_app, examples_model_path):
    answer = examples_app.test_client().get("/examples/rocker/1.jpg")
    assert answer.status_code == 200 and answer.mimetype == "image/jpeg"
    expected = (examples_folder(examples_model_path) / "rocker" / "1.jpg").read_bytes()
    assert answer.get_data() == expected


@pytest.mark.parametrize(
    "path",
    [
        "/examples/mod/2.jpg",  # not there
        "/examples/punk/0.jpg",  # no such class
        "/examples/mod/notes.txt",  # beside the examples, but not one
        "/examples/mod/linked.jpg",  # a symbolic link out of the folder
        "/examples/mod/..%2F..%2Fexport.pkl",
        "/examples/..%2F/export.pkl",
        "/examples/mod/%2e%2e",
    ],
)
def test_nothing_but_a_listed_example_is_ever_served(examples_app, examples_model_path, path):
    folder = examples_folder(examples_model_path) / "mod"
    (folder / "notes.txt").write_text("not an example")
    linked = folder / "linked.jpg"
    if not linked.is_symlink():
        linked.symlink_to(examples_model_path)
    try:
        answer = examples_app.test_client().get(path, follow_redirects=True)
    finally:
        linked.unlink()
        (folder / "notes.txt").unlink()
    assert answer.status_code == 404
    assert b"fastai" not in answer.get_data() and b"not an example" not in answer.get_data()


def post_example(client, value: str, token: str | None = "read"):
    """Press an example's button on the page without JavaScript."""
    fields = {"example": value}
    if token == "read":
        fields["csrf_token"] = read_csrf_token(client.get("/").get_data(as_text=True))
    return client.post("/examples", data=fields)


@pytest.mark.parametrize("value", ["mod/0.jpg", "rocker/1.jpg"])
def test_clicking_an_example_without_javascript_classifies_it(examples_app, value):
    client = examples_app.test_client()
    answer = post_example(client, value)
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    label = value.split("/")[0]
    assert f"That picture belongs to {label} (" in html
    assert "data:image/jpeg;base64," in html  # the example's thumbnail in the result card


@pytest.mark.parametrize(
    ("value", "status", "words"),
    [
        ("mod/9.jpg", 400, "no longer beside the model"),
        ("../export.pkl", 400, "no longer beside the model"),
        ("", 400, "no longer beside the model"),
    ],
)
def test_an_example_that_is_not_listed_is_refused_with_a_sentence(
    examples_app, value, status, words
):
    answer = post_example(examples_app.test_client(), value)
    assert answer.status_code == status and words in answer.get_data(as_text=True)


def test_an_example_post_needs_a_csrf_token(examples_app):
    assert post_example(examples_app.test_client(), "mod/0.jpg", token=None).status_code == 400
