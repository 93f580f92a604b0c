"""export.pkl replaced while serving: each worker looks on a timer of its own, so the new model is
picked up without a restart and without a prediction; a broken, mismatched or hostile replacement
leaves the old one serving and the log says why, once; a card left from the model before is
stale and is not shown as the new model's."""

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

from .support import RENAMED_CLASSES, service_settings, wait_until

INTERVAL = 0.05
LOOKS = 10  # intervals a test waits to be sure a refusal is not logged again
pytestmark = pytest.mark.timeout(60)  # a reload that blocks fails the test instead of hanging it


def replace(target: Path, source: Path | bytes, age: float = 0) -> None:
    """Replace `target` atomically (write beside it, then rename), as a careful operator does;
    the new file is dated `age` seconds back (`cp -p` of an older file)."""
    staging = target.with_name(f".{target.name}.new")
    if isinstance(source, bytes):
        staging.write_bytes(source)
    else:
        shutil.copyfile(source, staging)
    if age:
        then = time.time() - age
        os.utime(staging, (then, then))
    os.replace(staging, target)


def write_card(model: Path, source: Path | None = None, sha256: str | None = None) -> None:
    """A model card next to `model` recording the sha256 of `source` (or the one given)."""
    sha256 = sha256 or hashlib.sha256(source.read_bytes()).hexdigest()
    replace(model.with_suffix(".json"), json.dumps({"name": "tiny", "sha256": sha256}).encode())


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


def logged(caplog, words: str) -> int:
    """How many log records so far contain `words`."""
    return sum(words in record.getMessage() for record in caplog.records)


def wait_for_log(caplog, words: str, timeout: float = 20) -> None:
    """Wait until the log has `words`."""
    wait_until(lambda: logged(caplog, words), timeout, message=f"never logged: {words!r}")


def watch_threads() -> int:
    """How many model-watch threads are running in this process."""
    return sum(thread.name == "model-watch" for thread in threading.enumerate())


def test_a_replaced_model_is_picked_up_on_the_timer_without_a_prediction(
    served, renamed_model_path, png_pictures, caplog
):
    assert served.predict_bytes(png_pictures["mod0"]).label == "mod"
    with caplog.at_level(logging.INFO, logger="classifier.service"):
        replace(served.path, renamed_model_path)
        wait_until(lambda: served.classes == RENAMED_CLASSES, message="never reloaded")
    assert f"Reloaded {served.path} in " in caplog.text
    assert served.predict_bytes(png_pictures["rocker1"]).label == "teddy"


def test_the_first_prediction_after_the_swap_is_logged_gets_the_new_model(
    served, renamed_model_path, png_pictures, caplog
):
    with caplog.at_level(logging.INFO, logger="classifier.service"):
        replace(served.path, renamed_model_path)
        wait_for_log(caplog, "Reloaded")
        assert served.predict_bytes(png_pictures["mod0"]).label == "punk"


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
        wait_for_log(caplog, "Kept serving the previous model")
    assert words in caplog.text and str(served.path) in caplog.text
    assert served.predict_bytes(png_pictures["rocker0"]).label == "rocker"
    assert words in (served.load_problem or "")


# --- the model card: stale, or the file's own --------------------------------------------


def test_a_replacement_newer_than_the_card_is_served_and_the_card_is_stale(
    served, model_path, renamed_model_path, png_pictures, caplog
):
    write_card(served.path, model_path)
    wait_until(lambda: served.card is not None, message="the matching card was never read")
    with caplog.at_level(logging.INFO, logger="classifier.service"):
        replace(served.path, renamed_model_path)  # cp other/export.pkl models/export.pkl
        wait_until(lambda: served.classes == RENAMED_CLASSES, message="never reloaded")
    assert served.card is None
    assert "describes another file" in (served.card_problem or "")
    assert logged(caplog, f"Serving {served.path} without its model card") == 1
    assert served.predict_bytes(png_pictures["mod0"]).label == "punk"


def test_a_replacement_older_than_its_card_is_refused_until_the_card_matches(
    served, model_path, renamed_model_path, png_pictures, caplog
):
    write_card(served.path, model_path)
    with caplog.at_level(logging.ERROR, logger="classifier.service"):
        # the card is newer, so it belongs to this file: the file was changed after training
        replace(served.path, renamed_model_path, age=3600)
        wait_for_log(caplog, "does not match the sha256")
    assert "Kept serving the previous model" in caplog.text
    assert served.predict_bytes(png_pictures["mod0"]).label == "mod"
    write_card(served.path, renamed_model_path)  # the operator copies the matching card too
    wait_until(lambda: served.classes == RENAMED_CLASSES, message="never reloaded")
    assert served.card is not None and served.card_problem is None


# --- hostile files: refused unread, logged once, and the next file loads ------------------


def put_fifo(path: Path) -> None:
    """A named pipe, renamed into place: reading it would wait for ever."""
    staging = path.with_name(".fifo")
    os.mkfifo(staging)
    os.replace(staging, path)


def put_link(path: Path, target: str | Path) -> None:
    """A symbolic link to `target`, renamed into place."""
    staging = path.with_name(".link")
    os.symlink(target, staging)
    os.replace(staging, path)


def put_oversized(path: Path) -> None:
    """A regular file one byte over the cap of the `capped` fixture (sparse: no disk)."""
    staging = path.with_name(".big")
    with staging.open("wb") as file:
        file.truncate(path.stat().st_size + 4097)
    os.replace(staging, path)


HOSTILE = [
    (put_fifo, "is a FIFO (named pipe), not a regular file"),
    (lambda path: put_link(path, "/dev/zero"), "which is a character device"),
    (lambda path: put_link(path, path.with_name("nowhere.pkl")), "which does not exist"),
    (put_oversized, "over the limit of"),
]
HOSTILE_IDS = ["fifo", "dev-zero", "dangling-link", "over-the-cap"]


@pytest.fixture
def capped(model_path, tmp_path):
    """Like `served`, with a size cap just above the tiny model."""
    copy = tmp_path / "models" / "export.pkl"
    copy.parent.mkdir()
    shutil.copyfile(model_path, copy)
    cap = copy.stat().st_size + 4096
    service = ModelService(
        service_settings(copy, model_reload_interval=INTERVAL, model_max_bytes=cap)
    )
    service.start()
    yield service
    service.stop()


@pytest.mark.parametrize(("put", "words"), HOSTILE, ids=HOSTILE_IDS)
def test_a_hostile_replacement_is_refused_once_and_the_next_valid_file_loads(
    capped, renamed_model_path, png_pictures, caplog, put, words
):
    with caplog.at_level(logging.INFO, logger="classifier.service"):
        put(capped.path)
        wait_for_log(caplog, words)
        time.sleep(LOOKS * INTERVAL)  # the watch keeps looking at the same file meanwhile
        assert logged(caplog, words) == 1
        assert logged(caplog, "Kept serving the previous model") == 1
        assert capped.predict_bytes(png_pictures["mod0"]).label == "mod"
        replace(capped.path, renamed_model_path)
        wait_until(lambda: capped.classes == RENAMED_CLASSES, message="never reloaded")
    assert logged(caplog, words) == 1
    assert capped.load_problem is None


# --- the timer itself ---------------------------------------------------------------------


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
        wait_until(lambda: len(answers) >= 6, message="no answers before the swap")
        replace(served.path, renamed_model_path)
        wait_until(lambda: answers[-6:] == ["punk"] * 6, message="the new model never answered")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert set(answers) == {"mod", "punk"} and answers[-1] == "punk"


def test_a_model_that_appears_later_is_loaded_without_a_prediction(
    tmp_path, model_path, png_pictures
):
    path = tmp_path / "export.pkl"
    service = ModelService(service_settings(path, model_reload_interval=INTERVAL))
    service.start()
    try:
        with pytest.raises(NoModelError, match="picks it up by itself"):
            service.predict_bytes(png_pictures["mod0"])
        replace(path, model_path)
        wait_until(lambda: service.loaded, message="the new model was never loaded")
        assert service.predict_bytes(png_pictures["mod0"]).label == "mod"
    finally:
        service.stop()


def test_the_watch_thread_runs_from_start_until_stop(model_path, tmp_path):
    before = watch_threads()
    service = ModelService(service_settings(tmp_path / "none.pkl", model_reload_interval=INTERVAL))
    assert watch_threads() == before  # made, not started: nothing looks yet
    service.start()
    assert watch_threads() == before + 1
    service.stop()
    assert watch_threads() == before


def test_with_reloading_off_nothing_looks_at_the_file_again(
    model_path, renamed_model_path, tmp_path, png_pictures
):
    path = tmp_path / "export.pkl"
    shutil.copyfile(model_path, path)
    before = watch_threads()
    service = ModelService(service_settings(path, model_reload_interval=0))
    service.start()
    try:
        assert watch_threads() == before
        replace(path, renamed_model_path)
        for _ in range(LOOKS):
            assert service.predict_bytes(png_pictures["mod0"]).label == "mod"
            time.sleep(INTERVAL)
    finally:
        service.stop()
