"""Many clients at once: each gets the prediction for its own image, equal to learn.predict."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from fastai.vision.core import PILImage

from classifier.decode import decode_image

from .support import MAX_PIXELS

CLIENTS = 12
ROUNDS = 4


@pytest.fixture(scope="module")
def expected(tiny_learner, png_pictures) -> dict[str, list[float]]:
    """learn.predict's probabilities for each picture, decoded the way the app decodes it."""
    answers = {}
    with tiny_learner.no_bar():
        for name, data in png_pictures.items():
            _, _, probabilities = tiny_learner.predict(
                PILImage.create(decode_image(data, max_pixels=MAX_PIXELS))
            )
            answers[name] = probabilities.tolist()
    return answers


def interleaved(names: list[str], count: int) -> list[str]:
    """mod0, rocker0, mod1, rocker1, ... repeated: neighbours always differ in class."""
    mods = [name for name in names if name.startswith("mod")]
    rockers = [name for name in names if name.startswith("rocker")]
    pairs = [name for pair in zip(mods, rockers, strict=True) for name in pair]
    return [pairs[index % len(pairs)] for index in range(count)]


def assert_matches(name: str, body: dict, expected: dict[str, list[float]], classes: list[str]):
    """The answer for `name` has its own image's label and probabilities (within 1e-4)."""
    probabilities = [body["probabilities"][label] for label in classes]
    assert probabilities == pytest.approx(expected[name], abs=1e-4), name
    assert body["label"] == classes[max(range(len(classes)), key=probabilities.__getitem__)]


def test_the_test_pictures_cover_both_classes(expected):
    labels = {max(range(2), key=probabilities.__getitem__) for probabilities in expected.values()}
    assert labels == {0, 1}


def test_concurrent_clients_in_process_each_get_their_own_answer(
    shared_app, png_pictures, expected
):
    classes = ["mod", "rocker"]
    names = interleaved(list(png_pictures), CLIENTS * ROUNDS)

    def ask(name: str):
        client = shared_app.test_client()
        answer = client.post(
            "/api/predict", data={"file": (io.BytesIO(png_pictures[name]), "same-name.png")}
        )
        return name, answer.status_code, answer.get_json()

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(ask, names))
    for name, status, body in results:
        assert status == 200
        assert_matches(name, body, expected, classes)


def test_concurrent_clients_over_http_each_get_their_own_answer(
    live_server, png_pictures, expected
):
    names = interleaved(list(png_pictures), CLIENTS * ROUNDS)

    def ask(name: str):
        # every client sends the same filename: the app must never write uploads under it
        files = {"file": ("IMG_0001.png", png_pictures[name], "image/png")}
        answer = requests.post(f"{live_server.url}/api/predict", files=files, timeout=60)
        return name, answer.status_code, answer.json()

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(ask, names))
    for name, status, body in results:
        assert status == 200, body
        assert_matches(name, body, expected, ["mod", "rocker"])


def test_no_progress_bar_reaches_the_server_log(live_server, png_pictures):
    for data in list(png_pictures.values())[:4]:
        requests.post(
            f"{live_server.url}/api/predict",
            data=data,
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
    log = live_server.log()
    assert "POST /api/predict" in log
    assert not re.search(r"█|\d+\.\d+% \[|\[\d+/\d+ ", log)
