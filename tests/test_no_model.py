"""Without a model file the app still starts and says exactly how to get one."""

from __future__ import annotations

import io

import pytest

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
    yield app.test_client()
    app.extensions["seafront.model"].stop()


def test_page_shows_a_banner_saying_how_to_get_a_model(empty_client):
    html = empty_client.get("/").get_data(as_text=True)
    assert 'id="no-model"' in html
    for words in ("python train.py demo", "python train.py fit --data DIR", "export.pkl"):
        assert words in html


@pytest.mark.parametrize(
    ("interval", "words"),
    [
        (1.0, "picks the file up by itself within a few seconds (it looks every 1 s"),
        (0, "then restart <code>python application.py</code>"),
    ],
    ids=["reloading", "reloading-off"],
)
def test_the_banner_says_whether_the_app_picks_a_new_model_up(make_app, tmp_path, interval, words):
    app = make_app(MODEL_PATH=str(tmp_path / "none.pkl"), MODEL_RELOAD_INTERVAL=interval)
    html = " ".join(app.test_client().get("/").get_data(as_text=True).split())
    assert words in html
    assert ("restart" in html) == (interval == 0)


@pytest.mark.parametrize(
    ("interval", "words"),
    [(1.0, "the app picks it up by itself"), (0, "then restart the app")],
    ids=["reloading", "reloading-off"],
)
def test_the_503_says_whether_the_app_picks_a_new_model_up(make_app, tmp_path, interval, words):
    app = make_app(MODEL_PATH=str(tmp_path / "none.pkl"), MODEL_RELOAD_INTERVAL=interval)
    answer = app.test_client().post("/api/predict", data=b"x", content_type="image/png")
    assert answer.status_code == 503 and words in answer.get_json()["error"]
    assert "`" not in answer.get_json()["error"]  # a sentence, not Markdown


def test_api_answers_503_with_a_json_error(empty_client):
    answer = empty_client.post("/api/predict", data=b"x", content_type="image/png")
    assert answer.status_code == 503
    assert "python train.py demo" in answer.get_json()["error"]


def test_healthz_reports_no_model(empty_client):
    assert empty_client.get("/healthz").get_json() == {
        "status": "ok",
        "model_loaded": False,
        "device": "cpu",
        "classes": [],
    }


def test_form_post_explains_there_is_no_model(empty_client, png_pictures):
    from .support import read_csrf_token

    token = read_csrf_token(empty_client.get("/").get_data(as_text=True))
    answer = empty_client.post(
        "/",
        data={"csrf_token": token, "file": (io.BytesIO(png_pictures["mod0"]), "a.png")},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 503
    assert "No model at" in answer.get_data(as_text=True)
