"""The model is only loaded from the configured path, and only if it matches its model card."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from classifier.errors import ModelLoadError, StartupError
from classifier.integrity import read_verified
from classifier.loading import load_export
from classifier.service import ModelService
from webapp import create_app

from .support import service_settings


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
def test_a_model_that_matches_its_card_or_has_none_loads(model_copy, fields):
    digest = sha256_of(model_copy)
    if fields.get("sha256") == "MATCH":
        fields = {"sha256": digest}
    elif fields.get("sha256") == "MATCH-UPPER":
        fields = {"sha256": digest.upper()}
    card(model_copy, **fields)
    assert read_verified(model_copy) == model_copy.read_bytes()


def test_a_model_without_a_card_loads(model_copy):
    assert read_verified(model_copy) == model_copy.read_bytes()


def test_a_sha256_mismatch_refuses_the_file_with_a_clear_sentence(model_copy):
    card(model_copy, sha256="0" * 64)
    with pytest.raises(ModelLoadError) as raised:
        read_verified(model_copy)
    message = str(raised.value)
    assert f"{model_copy} does not match the sha256 recorded in " in message
    assert str(model_copy.with_suffix(".json")) in message
    assert "Copy the export.pkl that belongs to export.json" in message


def test_a_sha256_mismatch_stops_start_up(model_copy, tmp_path):
    card(model_copy, sha256="0" * 64)
    with pytest.raises(StartupError, match="does not match the sha256"):
        create_app({"MODEL_PATH": str(model_copy), "INSTANCE_PATH": str(tmp_path / "instance")})


def test_a_card_that_is_not_json_records_nothing_and_the_log_says_so(model_copy, caplog):
    model_copy.with_suffix(".json").write_text("{ not json")
    with caplog.at_level(logging.WARNING, logger="classifier.integrity"):
        assert read_verified(model_copy) == model_copy.read_bytes()
    assert f"{model_copy} is not checked against its sha256" in caplog.text


def test_the_checked_bytes_are_the_ones_unpickled(model_copy):
    checked = read_verified(model_copy)
    model_copy.write_bytes(b"swapped after the check")  # a race an attacker might try
    assert list(load_export(model_copy, checked).dls.vocab) == ["mod", "rocker"]


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


def test_the_service_loads_the_configured_file_only(tmp_path):
    settings = service_settings(tmp_path / "absent" / "export.pkl")
    service = ModelService(settings)
    service.start()
    assert not service.loaded and service.path == settings.model_path
