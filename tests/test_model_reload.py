"""export.pkl replaced while serving: the new model is picked up without a restart; a broken or
mismatched replacement leaves the old one serving and the log says why."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from classifier.errors import NoModelError
from classifier.service import ModelService

from .support import RENAMED_CLASSES, service_settings

INTERVAL = 0.05


def replace(target: Path, source: Path | bytes) -> None:
    """Replace `target` atomically (write beside it, then rename), as a careful operator does."""
    staging = target.with_name(f".{target.name}.new")
    if isinstance(source, bytes):
        staging.write_bytes(source)
    else:
        shutil.copyfile(source, staging)
    os.replace(staging, target)


def write_card(model: Path, source: Path | None = None, sha256: str | None = None) -> None:
    """A model card next to `model` recording the sha256 of `source` (or the one given)."""
    sha256 = sha256 or hashlib.sha256(source.read_bytes()).hexdigest()
    model.with_suffix(".json").write_text(json.dumps({"name": "tiny", "sha256": sha256}))


@pytest.fixture
def served(model_path, tmp_path):
    """A ModelService on a copy of the tiny model that it looks at every 50 ms."""
    copy = tmp_path / "models" / "export.pkl"
    copy.parent.mkdir()
    shutil.copyfile(model_path, copy)
    service = ModelService(service_settings(copy, model_reload_interval=INTERVAL))
    service.start()
    yield service
    service.stop()


def label_after(service: ModelService, data: bytes, wanted: set[str], timeout: float = 20) -> str:
    """Keep predicting (each request gives the service a chance to look) until a wanted label."""
    deadline = time.monotonic() + timeout
    label = service.predict_bytes(data).label
    while label not in wanted and time.monotonic() < deadline:
        time.sleep(INTERVAL)
        label = service.predict_bytes(data).label
    return label


def still_mod_until_logged(
    service: ModelService, data: bytes, caplog, words: str, never: str
) -> None:
    """Keep predicting `data` (the old model must still say "mod") until the log has `words`."""
    deadline = time.monotonic() + 20
    while words not in caplog.text:
        assert time.monotonic() < deadline, never
        assert service.predict_bytes(data).label == "mod"
        time.sleep(INTERVAL)


def test_a_replaced_model_is_picked_up_without_a_restart(
    served, renamed_model_path, png_pictures, caplog
):
    assert served.predict_bytes(png_pictures["mod0"]).label == "mod"
    with caplog.at_level(logging.INFO, logger="classifier.service"):
        replace(served.path, renamed_model_path)
        assert label_after(served, png_pictures["mod0"], {"punk"}) == "punk"
    assert served.classes == RENAMED_CLASSES
    assert served.predict_bytes(png_pictures["rocker1"]).label == "teddy"
    assert f"Reloaded {served.path} in " in caplog.text


@pytest.mark.parametrize(
    ("contents", "words"),
    [
        (b"this is not a pickle", "is not a loadable fastai export"),
        (b"", "is not a loadable fastai export"),
    ],
)
def test_a_broken_replacement_keeps_the_old_model_and_logs_why(
    served, png_pictures, caplog, contents, words
):
    with caplog.at_level(logging.ERROR, logger="classifier.service"):
        replace(served.path, contents)
        still_mod_until_logged(
            served,
            png_pictures["mod0"],
            caplog,
            "Kept serving the previous model",
            never="the broken file was never looked at",
        )
    assert words in caplog.text and str(served.path) in caplog.text
    assert served.predict_bytes(png_pictures["rocker0"]).label == "rocker"


def test_a_replacement_that_does_not_match_the_card_is_refused_until_the_card_matches(
    served, model_path, renamed_model_path, png_pictures, caplog
):
    write_card(served.path, model_path)
    with caplog.at_level(logging.ERROR, logger="classifier.service"):
        replace(served.path, renamed_model_path)
        still_mod_until_logged(
            served,
            png_pictures["mod0"],
            caplog,
            "does not match the sha256",
            never="the mismatch was never noticed",
        )
    assert "Kept serving the previous model" in caplog.text
    write_card(served.path, renamed_model_path)  # the operator copies the matching card too
    assert label_after(served, png_pictures["mod0"], {"punk"}) == "punk"


def test_requests_during_a_swap_are_all_answered(served, renamed_model_path, png_pictures):
    answers, errors, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                answers.append(served.predict_bytes(png_pictures["mod1"]).label)
            except Exception as error:  # noqa: BLE001 - collected and asserted on below
                errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        replace(served.path, renamed_model_path)
        deadline = time.monotonic() + 20
        while "punk" not in answers[-6:] and time.monotonic() < deadline:
            time.sleep(INTERVAL)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert set(answers) == {"mod", "punk"} and answers[-1] == "punk"


def test_a_model_that_appears_later_is_loaded(tmp_path, model_path, png_pictures):
    path = tmp_path / "export.pkl"
    service = ModelService(service_settings(path, model_reload_interval=INTERVAL))
    service.start()
    try:
        with pytest.raises(NoModelError):
            service.predict_bytes(png_pictures["mod0"])
        replace(path, model_path)
        deadline = time.monotonic() + 20
        while not service.loaded:
            assert time.monotonic() < deadline, "the new model was never loaded"
            with pytest.raises(NoModelError):  # answered at once while it loads
                service.predict_bytes(png_pictures["mod0"])
            time.sleep(INTERVAL)
        assert service.predict_bytes(png_pictures["mod0"]).label == "mod"
    finally:
        service.stop()


def test_with_reloading_off_the_file_is_never_looked_at_again(
    model_path, renamed_model_path, tmp_path, png_pictures
):
    path = tmp_path / "export.pkl"
    shutil.copyfile(model_path, path)
    service = ModelService(service_settings(path, model_reload_interval=0))
    service.start()
    try:
        replace(path, renamed_model_path)
        for _ in range(10):
            assert service.predict_bytes(png_pictures["mod0"]).label == "mod"
            time.sleep(INTERVAL)
    finally:
        service.stop()
