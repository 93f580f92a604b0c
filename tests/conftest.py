"""Shared fixtures: a tiny real fastai model, pictures, the app, clients, a live server."""

from __future__ import annotations

import os

# torch's OpenMP threads spin while waiting; on a shared 2-core machine that slows every other
# test's training several times over. Set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The suite serves the learner's model in eager fp32, so that its answers do not depend on which
# CPU CI lands on (auto is bf16 where the CPU computes it) and no app pays seconds for an ONNX
# export and compilation; tests/test_backends.py covers auto, the exported runtimes and bf16.
os.environ.setdefault("SEAFRONT_BACKEND", "torch")
os.environ.setdefault("SEAFRONT_PRECISION", "fp32")

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from webapp import create_app

from .imagemaker import CLASSES, encode, make_picture
from .support import RENAMED_CLASSES, LiveServer, RedisServer, read_csrf_token
from .tinymodel import train_tiny_model, write_dataset

# hypothesis keeps its examples and caches in .hypothesis/ in the working folder; the tests
# leave the checkout as they found it, so it keeps them in a temporary folder instead
settings.register_profile("no-database", database=None)
settings.load_profile("no-database")
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="seafront-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)


def pytest_unconfigure(config):
    """Remove hypothesis's temporary folder."""
    shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_learner(tmp_path_factory):
    """A real fastai Learner, trained on synthetic pictures and exported (a few seconds)."""
    folder = tmp_path_factory.mktemp("tiny_model")
    data = write_dataset(folder / "data")
    return train_tiny_model(data, folder / "export.pkl")


@pytest.fixture(scope="session")
def model_path(tiny_learner) -> Path:
    """The tiny model's export.pkl."""
    return Path(tiny_learner.dls.path).parent / "export.pkl"


@pytest.fixture(scope="session")
def pictures() -> dict[str, Image.Image]:
    """Fresh pictures the model has not seen: three of each class, of different sizes."""
    rng = np.random.default_rng(1234)
    return {
        f"{label}{index}": make_picture(label, rng, (40 + 17 * index, 90 - 11 * index))
        for label in CLASSES
        for index in range(3)
    }


@pytest.fixture(scope="session")
def png_pictures(pictures) -> dict[str, bytes]:
    """The pictures as PNG bytes."""
    return {name: encode(image) for name, image in pictures.items()}


@pytest.fixture
def make_app(model_path, tmp_path) -> Iterator[Callable]:
    """Build apps with the tiny model and extra config; their batcher threads stop afterwards."""
    apps = []

    def make(**config):
        settings = {
            "TESTING": True,
            "MODEL_PATH": str(model_path),
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "UPLOAD_FOLDER": str(tmp_path / "uploads"),
            **config,
        }
        app = create_app(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["seafront.model"].stop()


@pytest.fixture(scope="session")
def shared_app(model_path, tmp_path_factory):
    """One app with the tiny model for read-only tests (loading it once keeps the suite fast)."""
    folder = tmp_path_factory.mktemp("shared_app")
    app = create_app(
        {"TESTING": True, "MODEL_PATH": str(model_path), "INSTANCE_PATH": str(folder / "instance")}
    )
    yield app
    app.extensions["seafront.model"].stop()


@pytest.fixture
def client(shared_app):
    """A test client of the shared app."""
    return shared_app.test_client()


@pytest.fixture
def csrf_token(client) -> str:
    """A real CSRF token, read from the upload page as a browser would."""
    return read_csrf_token(client.get("/").get_data(as_text=True))


@pytest.fixture(scope="module")
def browser():
    """Debian's headless chromium driven by Playwright (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def live_server(model_path, tmp_path_factory) -> Iterator[LiveServer]:
    """The app served by gunicorn on 127.0.0.1, for tests that need real HTTP and real threads."""
    server = LiveServer(model_path, tmp_path_factory.mktemp("live"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """Debian's redis-server on 127.0.0.1, for the tests of shared state (emptied by each user)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server.url


# --- a second model, for hot reload ---------------------------------------------------------


@pytest.fixture(scope="session")
def renamed_model_path(tiny_learner, tmp_path_factory) -> Path:
    """The tiny model exported again with other class names: a different model to swap in."""
    from fastai.data.transforms import CategoryMap
    from fastai.learner import load_learner

    learner = load_learner(Path(tiny_learner.dls.path).parent / "export.pkl")
    learner.dls.categorize.vocab = CategoryMap(RENAMED_CLASSES)
    path = tmp_path_factory.mktemp("renamed_model") / "export.pkl"
    learner.export(path)
    return path


@pytest.fixture(scope="session")
def coarse_model_path(tiny_learner, tmp_path_factory) -> Path:
    """The tiny model exported again to take 8 px photos: its last conv map is only 2x2."""
    from fastai.learner import load_learner

    learner = load_learner(Path(tiny_learner.dls.path).parent / "export.pkl")
    for transform in learner.dls.valid.after_item.fs:
        if hasattr(transform, "size"):
            transform.size = (8, 8)
    path = tmp_path_factory.mktemp("coarse_model") / "export.pkl"
    learner.export(path)
    return path


@pytest.fixture(scope="session")
def examples_model_path(model_path, tmp_path_factory) -> Path:
    """A copy of the tiny model with two example photos per class saved beside it."""
    from formats.examples import write_examples

    path = tmp_path_factory.mktemp("examples_model") / "export.pkl"
    shutil.copyfile(model_path, path)
    rng = np.random.default_rng(77)
    write_examples(
        path, {label: [make_picture(label, rng, (120, 90)) for _ in range(2)] for label in CLASSES}
    )
    return path
