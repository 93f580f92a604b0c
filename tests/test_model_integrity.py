"""The model is only loaded from the configured path, only from a regular file under the size cap,
read without ever blocking, and only if it matches a model card that belongs to it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from classifier.errors import ModelLoadError, StartupError
from classifier.integrity import read_checked
from classifier.loading import load_export
from classifier.service import ModelService
from webapp import create_app
from webapp.settings import default

from .support import service_settings

MAX_BYTES: int = default("MODEL_MAX_BYTES")
# a file a refusal must never read: a regression here would hang the test, so it fails instead
NEVER_BLOCKS = pytest.mark.timeout(20)


@pytest.fixture
def model_copy(model_path, tmp_path):
    """A copy of the tiny model in its own models/ folder."""
    path = tmp_path / "models" / "export.pkl"
    path.parent.mkdir()
    shutil.copyfile(model_path, path)
    return path


def card(model, **fields) -> None:
    """Write the model card next to `model`."""
    model.with_suffix(".json").write_text(json.dumps({"name": "tiny", **fields}))


def sha256_of(path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_times(model: Path, model_age: float, card_age: float) -> None:
    """Date the model file and its card `model_age` and `card_age` seconds back."""
    now = time.time()
    os.utime(model, (now - model_age, now - model_age))
    os.utime(model.with_suffix(".json"), (now - card_age, now - card_age))


def read(model: Path, max_bytes: int = MAX_BYTES) -> bytes:
    """The checked bytes of `model`."""
    return read_checked(model, max_bytes).data


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"sha256": None},
        {"sha256": "MATCH"},
        {"sha256": "MATCH-UPPER"},
    ],
    ids=["no sha256", "null sha256", "matching sha256", "upper-case sha256"],
)
def test_a_model_that_matches_its_card_or_has_none_loads_with_its_card(model_copy, fields):
    digest = sha256_of(model_copy)
    if fields.get("sha256") == "MATCH":
        fields = {"sha256": digest}
    elif fields.get("sha256") == "MATCH-UPPER":
        fields = {"sha256": digest.upper()}
    card(model_copy, **fields)
    set_times(model_copy, model_age=0, card_age=60)  # a matching card is older: still its card
    checked = read_checked(model_copy, MAX_BYTES)
    assert checked.data == model_copy.read_bytes()
    assert checked.card.card.name == "tiny" and checked.card.problem is None


def test_a_model_without_a_card_loads(model_copy):
    checked = read_checked(model_copy, MAX_BYTES)
    assert checked.data == model_copy.read_bytes()
    assert checked.card.card is None and checked.card.problem is None


@pytest.mark.parametrize(
    ("model_age", "card_age"),
    [(60, 0), (0, 0)],
    ids=["card newer than the file", "card as old as the file"],
)
def test_a_sha256_mismatch_with_a_card_that_belongs_to_the_file_refuses_it(
    model_copy, model_age, card_age
):
    card(model_copy, sha256="0" * 64)
    set_times(model_copy, model_age, card_age)
    with pytest.raises(ModelLoadError) as raised:
        read(model_copy)
    message = str(raised.value)
    assert f"{model_copy} does not match the sha256 recorded in " in message
    assert str(model_copy.with_suffix(".json")) in message
    assert "changed or only partly copied after training" in message
    assert "Copy the export.pkl that belongs to export.json" in message


def test_a_card_older_than_the_file_is_stale_and_the_file_loads_without_it(model_copy):
    card(model_copy, sha256="0" * 64)
    set_times(model_copy, model_age=0, card_age=60)  # `cp other/export.pkl models/` after fit
    checked = read_checked(model_copy, MAX_BYTES)
    assert checked.data == model_copy.read_bytes()
    assert checked.card.card is None
    problem = checked.card.problem
    assert problem and "describes another file" in problem and "older than the file" in problem
    assert "000000000000" in problem and sha256_of(model_copy)[:16] in problem


def test_a_sha256_mismatch_stops_start_up(model_copy, tmp_path):
    card(model_copy, sha256="0" * 64)
    set_times(model_copy, model_age=60, card_age=0)
    with pytest.raises(StartupError, match="does not match the sha256"):
        create_app({"MODEL_PATH": str(model_copy), "INSTANCE_PATH": str(tmp_path / "instance")})


def test_a_card_that_is_not_json_records_nothing_and_says_so(model_copy):
    model_copy.with_suffix(".json").write_text("{ not json")
    checked = read_checked(model_copy, MAX_BYTES)
    assert checked.data == model_copy.read_bytes() and checked.card.card is None
    assert f"{model_copy} is not checked against its sha256" in (checked.card.problem or "")


def test_the_checked_bytes_are_the_ones_unpickled(model_copy):
    checked = read(model_copy)
    model_copy.write_bytes(b"swapped after the check")  # a race an attacker might try
    assert list(load_export(model_copy, checked).dls.vocab) == ["mod", "rocker"]


# --- what is at the path: only a regular file is read -------------------------------------


def put_fifo(path: Path) -> None:
    """A named pipe with no writer: reading it would wait for ever."""
    os.mkfifo(path)


def put_link_to_dev_zero(path: Path) -> None:
    """A link to /dev/zero: reading it would fill the memory."""
    os.symlink("/dev/zero", path)


def put_dangling_link(path: Path) -> None:
    """A link to a file that does not exist."""
    os.symlink(path.with_name("nowhere.pkl"), path)


def put_folder(path: Path) -> None:
    """A folder where the file should be."""
    path.mkdir()


def put_sparse_file(path: Path) -> None:
    """A regular file larger than the default cap that takes no disk (nor memory, unread)."""
    with path.open("wb") as file:
        file.truncate(MAX_BYTES + 1)


def put_socket(path: Path) -> None:
    """A Unix socket (bound by a relative name: socket paths are short)."""
    here = Path.cwd()
    os.chdir(path.parent)
    try:
        server = socket.socket(socket.AF_UNIX)
        server.bind(path.name)
        server.close()  # the socket file stays
    finally:
        os.chdir(here)


@NEVER_BLOCKS
@pytest.mark.parametrize(
    ("put", "words"),
    [
        (put_fifo, "is a FIFO (named pipe), not a regular file"),
        (put_link_to_dev_zero, "is a symbolic link to /dev/zero, which is a character device"),
        (put_dangling_link, "nowhere.pkl, which does not exist"),
        (put_socket, "is a socket, not a regular file"),
        (put_folder, "is a folder, not a regular file"),
        (
            put_sparse_file,
            f"({MAX_BYTES + 1} bytes), over the limit of {MAX_BYTES} bytes (2 GB), so it is not",
        ),
    ],
    ids=["fifo", "dev-zero", "dangling-link", "socket", "folder", "over-the-cap"],
)
def test_anything_but_a_regular_file_under_the_cap_is_refused_unread(tmp_path, put, words):
    path = tmp_path / "export.pkl"
    put(path)
    with pytest.raises(ModelLoadError) as raised:
        read(path)
    assert words in str(raised.value) and str(path) in str(raised.value)


def test_a_link_to_a_regular_file_is_read(model_copy, tmp_path):
    link = tmp_path / "link.pkl"
    link.symlink_to(model_copy)
    assert read(link) == model_copy.read_bytes()


def test_a_model_over_a_small_cap_is_refused_and_names_the_setting(model_copy):
    size = model_copy.stat().st_size
    with pytest.raises(ModelLoadError) as raised:
        read(model_copy, max_bytes=size - 1)
    assert "SEAFRONT_MODEL_MAX_BYTES" in str(raised.value) and str(size) in str(raised.value)
    assert read(model_copy, max_bytes=size) == model_copy.read_bytes()


@NEVER_BLOCKS
def test_a_card_that_is_a_fifo_is_left_out_unread(model_copy):
    os.mkfifo(model_copy.with_suffix(".json"))
    checked = read_checked(model_copy, MAX_BYTES)
    assert checked.data == model_copy.read_bytes() and checked.card.card is None
    assert "is a FIFO (named pipe)" in (checked.card.problem or "")


@NEVER_BLOCKS
@pytest.mark.parametrize(
    ("put", "words"),
    [(put_fifo, "is a FIFO"), (put_link_to_dev_zero, "character device")],
    ids=["fifo", "dev-zero"],
)
def test_start_up_on_a_file_that_is_not_regular_stops_with_the_reason(tmp_path, put, words):
    path = tmp_path / "export.pkl"
    put(path)
    with pytest.raises(StartupError, match=words):
        ModelService(service_settings(path)).start()


def test_start_up_on_a_dangling_link_serves_no_model_and_says_why(tmp_path, caplog):
    path = tmp_path / "export.pkl"
    put_dangling_link(path)
    service = ModelService(service_settings(path, model_reload_interval=0))
    service.start()
    assert not service.loaded
    assert "nowhere.pkl, which does not exist" in (service.load_problem or "")
    assert "nowhere.pkl, which does not exist. No model at" in caplog.text


def test_a_relative_model_path_is_taken_from_the_app_folder_never_the_working_directory(
    model_path, tmp_path, monkeypatch
):
    decoy = tmp_path / "elsewhere" / "export.pkl"
    decoy.parent.mkdir()
    shutil.copyfile(model_path, decoy)
    monkeypatch.chdir(tmp_path)
    app = create_app(
        {"MODEL_PATH": "elsewhere/export.pkl", "INSTANCE_PATH": str(tmp_path / "instance")}
    )
    service = app.extensions["seafront.model"]
    assert service.path == Path(app.root_path) / "elsewhere" / "export.pkl"
    assert not service.loaded
    service.stop()


def test_the_service_loads_the_configured_file_only(tmp_path):
    settings = service_settings(tmp_path / "absent" / "export.pkl", model_reload_interval=0)
    service = ModelService(settings)
    service.start()
    assert not service.loaded and service.path == settings.model_path
