"""The app factory, its configuration sources, and the module-level WSGI callable."""

from __future__ import annotations

import importlib
import secrets
import stat

import pytest

import application
from webapp import create_app
from webapp.secret import load_or_create_secret_key


def test_testing_config_is_off_by_default_and_on_when_asked(make_app):
    assert not make_app(TESTING=False).testing
    assert make_app().testing


def test_environment_variables_configure_the_app(make_app, monkeypatch):
    monkeypatch.setenv("SEAFRONT_MAX_BATCH_SIZE", "3")
    monkeypatch.setenv("SEAFRONT_KEEP_UPLOADS", "true")
    app = make_app()
    assert (app.config["MAX_BATCH_SIZE"], app.config["KEEP_UPLOADS"]) == (3, True)


def test_config_argument_wins_over_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("SEAFRONT_MAX_BATCH_SIZE", "3")
    assert make_app(MAX_BATCH_SIZE=5).config["MAX_BATCH_SIZE"] == 5


def test_module_level_application_is_a_wsgi_app_built_on_first_use(monkeypatch, tmp_path):
    monkeypatch.setenv("SEAFRONT_MODEL_PATH", str(tmp_path / "absent.pkl"))
    monkeypatch.setenv("SEAFRONT_INSTANCE_PATH", str(tmp_path / "instance"))
    module = importlib.reload(application)
    assert "application" not in vars(module)  # importing alone builds nothing
    wsgi = module.application
    assert wsgi.name == "webapp" and callable(wsgi.wsgi_app)
    assert module.application is wsgi  # built once


def test_other_missing_module_attributes_still_raise():
    with pytest.raises(AttributeError):
        application.no_such_thing  # noqa: B018


def test_secret_key_is_generated_once_and_kept_owner_only(tmp_path):
    first = create_app(
        {"MODEL_PATH": str(tmp_path / "none.pkl"), "INSTANCE_PATH": str(tmp_path / "instance")}
    )
    again = create_app(
        {"MODEL_PATH": str(tmp_path / "none.pkl"), "INSTANCE_PATH": str(tmp_path / "instance")}
    )
    key_file = tmp_path / "instance" / "secret_key"
    assert first.config["SECRET_KEY"] == again.config["SECRET_KEY"] == key_file.read_text()
    assert len(first.config["SECRET_KEY"]) == 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_secret_key_from_the_environment_wins(tmp_path, monkeypatch):
    key = secrets.token_hex(32)
    monkeypatch.setenv("SEAFRONT_SECRET_KEY", key)
    app = create_app(
        {"MODEL_PATH": str(tmp_path / "none.pkl"), "INSTANCE_PATH": str(tmp_path / "instance")}
    )
    assert app.config["SECRET_KEY"] == key
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_an_empty_key_file_left_by_a_crash_is_reported(tmp_path):
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(RuntimeError, match="delete it"):
        load_or_create_secret_key(tmp_path)
