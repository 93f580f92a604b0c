"""The web layer: the Flask app factory. Each concern is a module wired in by its `init_app(app)`
or its blueprint; nothing heavy is imported until an app is built."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from .settings import ENV_PREFIX, FIXED_CONFIG, TRUE_WORDS, defaults

# the project's folder: templates/, static/ and the default models/, uploads/ and instance/
ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: the settings table, then SEAFRONT_* environment variables, then `config`."""
    # imported here so that `import webapp` (the gunicorn master, --help) loads no model code
    from flask_bootstrap import Bootstrap5
    from flask_wtf import CSRFProtect

    from . import (
        classify,
        errors,
        examples,
        explain,
        favicon,
        feedback,
        health,
        metrics,
        model_card,
        openapi,
        ratelimit,
        redis_client,
        requestlog,
        result_store,
        secret,
        security,
        service,
        wording,
    )

    config = config or {}
    instance_path = (
        config.get("INSTANCE_PATH")
        or os.environ.get(f"{ENV_PREFIX}_INSTANCE_PATH")
        or defaults()["INSTANCE_PATH"]
    )
    app = Flask(
        __name__,
        root_path=str(ROOT),
        instance_path=str((ROOT / instance_path).resolve()),
        instance_relative_config=True,
    )
    app.config.from_mapping({**FIXED_CONFIG, **defaults()})
    app.config.from_prefixed_env(ENV_PREFIX)
    app.config.from_mapping(config)
    requestlog.init_app(app)  # first, so that every answer (a refusal too) carries its id
    security.init_app(app)
    # `auto` is decided by `python application.py`, which knows the address it listens on
    if str(app.config["LOCAL_ONLY"]).strip().lower() in TRUE_WORDS:
        security.init_local_only(app, port=None)  # any port: an ssh tunnel may forward another
    secret.init_app(app)
    Bootstrap5(app)
    csrf = CSRFProtect(app)
    errors.init_app(app)
    redis_client.init_app(app)
    metrics.init_app(app)  # before the model, which reports to it
    service.init_app(app)
    result_store.init_app(app)
    wording.init_app(app)
    for blueprint in (
        classify.bp,
        classify.api,
        examples.bp,
        favicon.bp,
        health.bp,
        explain.bp,
        feedback.bp,
        model_card.bp,
        openapi.bp,
    ):
        app.register_blueprint(blueprint)
    csrf.exempt(classify.api)  # the JSON API uses no cookies, so there is nothing to forge
    ratelimit.init_app(app)  # last: it wraps the views the blueprints registered
    return app
