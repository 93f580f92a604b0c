#!/usr/bin/env python
"""brighton-seafront: serve a fastai image classifier from a Flask page and a JSON API.

`python application.py` serves it with gunicorn; `gunicorn application:application` does too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from flask import Flask
from flask_bootstrap import Bootstrap5
from flask_wtf import CSRFProtect

import server
from webapp import (
    api,
    errors,
    model,
    modelcard,
    openapi,
    result_store,
    result_views,
    secret,
    security,
    views,
)

ENV_PREFIX = "SEAFRONT"
DEFAULTS: dict[str, Any] = {
    "MODEL_PATH": "models/export.pkl",
    # seconds between looks for a replaced model file (loaded without a restart); 0: never
    "MODEL_RELOAD_INTERVAL": 1.0,
    "DEVICE": "auto",
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,
    "MAX_BATCH_SIZE": 8,
    "MAX_WAIT_MS": 50.0,
    "DRAFT_DECODE": True,
    "MAX_PIXELS": 50_000_000,
    "TORCH_THREADS": 0,
    "WORKERS": 1,
    "PRECISION": "auto",
    "KEEP_UPLOADS": False,
    "UPLOAD_FOLDER": "uploads",
    # caps on each folder uploads are kept in; the oldest files are rotated out
    "UPLOADS_MAX_FILES": 1000,
    "UPLOADS_MAX_BYTES": 500 * 1024 * 1024,
    "BOOTSTRAP_SERVE_LOCAL": True,
    # a page left open for hours should still post; the token lives as long as the session
    "WTF_CSRF_TIME_LIMIT": None,
    # the session holds the CSRF token: never sent on cross-site posts, never read by scripts
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    # results kept in memory for the page without JavaScript ("why?", feedback after a redirect)
    "RESULTS_KEPT": 64,
    "RESULTS_MAX_AGE_S": 900,
    # "Wrong? It is a ..." keeps the photo under UPLOAD_FOLDER/feedback/<label>/, capped
    "FEEDBACK": True,
    "FEEDBACK_MAX_FILES": 1000,
    "FEEDBACK_MAX_BYTES": 200 * 1024 * 1024,
}
# the command-line flags, the environment variable behind each, and the config key it sets
FLAGS = {
    "host": ("SEAFRONT_HOST", "127.0.0.1", None),
    "port": ("SEAFRONT_PORT", "5000", None),
    "model": ("SEAFRONT_MODEL_PATH", DEFAULTS["MODEL_PATH"], "MODEL_PATH"),
    "device": ("SEAFRONT_DEVICE", DEFAULTS["DEVICE"], "DEVICE"),
    "workers": ("SEAFRONT_WORKERS", "1", "WORKERS"),
    "threads": ("SEAFRONT_THREADS", "8", None),
    # seconds a request (headers and body) may take to arrive; a slower client is cut off
    "read-timeout": ("SEAFRONT_READ_TIMEOUT", "60", None),
}

csrf = CSRFProtect()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then SEAFRONT_* environment variables, then `config`."""
    config = config or {}
    # the secret key is kept in the instance folder; tests and deployments may move it
    instance_path = config.get("INSTANCE_PATH") or os.environ.get(f"{ENV_PREFIX}_INSTANCE_PATH")
    if instance_path:
        instance_path = str(Path(instance_path).resolve())
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env(ENV_PREFIX)
    app.config.from_mapping(config)
    security.init_app(app)
    secret.init_app(app)
    Bootstrap5(app)
    csrf.init_app(app)
    csrf.exempt(api.bp)
    errors.init_app(app)
    model.init_app(app)
    result_store.init_app(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(result_views.bp)
    app.register_blueprint(modelcard.bp)
    app.register_blueprint(openapi.bp)
    return app


def __getattr__(name: str) -> Flask:
    """`application`, the WSGI callable gunicorn and Elastic Beanstalk look for, made on first use.

    Built lazily so that importing this module (tests, `python application.py`'s gunicorn
    master) loads no model and touches no GPU before the workers fork.
    """
    if name != "application":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    server.configure_logging()  # under plain `gunicorn application:application` too
    app = globals()["application"] = create_app()
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags, each defaulting to its environment variable."""
    parser = argparse.ArgumentParser(description="Serve a fastai image classifier.")
    for flag, (variable, default, _) in FLAGS.items():
        parser.add_argument(f"--{flag}", default=os.environ.get(variable, default),
                            help=f"(env {variable}, default {default})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve with gunicorn (one process per worker, threads inside each)."""
    args = parse_args(argv)
    # the workers build the app from the environment, so the flags travel through it
    for flag, (variable, _, key) in FLAGS.items():
        value = getattr(args, flag.replace("-", "_"))
        if key == "MODEL_PATH":
            value = str(Path(value).resolve())
        if key:
            os.environ[variable] = str(value)
    server.configure_logging()
    server.serve(create_app, {
        "bind": f"{args.host}:{args.port}",
        "workers": int(args.workers),
        "threads": int(args.threads),
        "read_timeout": float(args.read_timeout),
        "timeout": 120,
        "graceful_timeout": 10,
    })


if __name__ == "__main__":
    sys.exit(main())
