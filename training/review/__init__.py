"""The local review page (`train.py review`): relabel or delete the images the model got most
wrong. It listens on 127.0.0.1 only and writes DIR/cleaned.csv; the public app never imports it."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import Flask
from flask_bootstrap import Bootstrap5
from flask_wtf.csrf import CSRFProtect

from classifier.errors import StartupError
from formats.labels import TOP_LOSSES_FILE, LabelsError, read_top_losses
from webapp import security, server

from .state import ReviewState
from .views import EXTENSION, Review, bp

log = logging.getLogger(__name__)


def create_review_app(
    data_dir: Path, reports_dir: Path, config: dict | None = None, port: int | None = None
) -> Flask:
    """The review page for the images of `data_dir` and `reports_dir`/top_losses.csv, for this
    machine's browsers only (on `port`; any port when None)."""
    app = Flask(__name__)
    # a fresh key per start is enough: sessions only carry flash messages and CSRF tokens
    app.config.from_mapping(
        SECRET_KEY=secrets.token_hex(32),
        BOOTSTRAP_SERVE_LOCAL=True,
        REVIEW_PAGE_SIZE=48,
        MAX_CONTENT_LENGTH=1024 * 1024,
        # cookies ignore the port: the app on 127.0.0.1 has its own, and neither breaks the other
        SESSION_COOKIE_NAME="seafront_review",
    )
    app.config.from_prefixed_env("SEAFRONT")
    app.config.update(config or {})
    try:
        state = ReviewState.load(Path(data_dir))
        top_losses = read_top_losses(Path(reports_dir) / TOP_LOSSES_FILE)
    except (LabelsError, OSError) as error:
        raise StartupError(str(error)) from None
    unknown = sum(row.file not in state.start_labels for row in top_losses)
    if top_losses and unknown == len(top_losses):
        raise StartupError(
            f"none of the files in {reports_dir}/top_losses.csv is an image of {data_dir}: "
            f"run `python train.py fit --data {data_dir}` to write the report for this folder"
        )
    if unknown:
        log.warning("%d row(s) of top_losses.csv name files no longer in %s", unknown, data_dir)
    classes = sorted(
        {
            *state.start_labels.values(),
            *(row.actual for row in top_losses),
            *(row.predicted for row in top_losses),
        }
    )
    app.extensions[EXTENSION] = Review(state, top_losses, classes)
    security.init_app(app)
    # it deletes files: a page of another site must not drive it from the user's own browser
    security.init_local_only(app, port)
    Bootstrap5(app)
    CSRFProtect(app)
    app.register_blueprint(bp)
    return app


def serve(data_dir: Path, reports_dir: Path, port: int) -> None:
    """Serve the review page on 127.0.0.1:`port` (never other interfaces) until interrupted."""
    # built here rather than in the worker so that a bad DIR is a StartupError for the CLI
    # logging first: the address below is the one line the user needs
    server.configure_logging()
    app = create_review_app(data_dir, reports_dir, port=port)
    log.info("review page for %s: http://127.0.0.1:%d/", data_dir, port)
    # Ctrl-C stops it in a moment: a reviewer's click is done in well under a second
    options = {"bind": f"127.0.0.1:{port}", "workers": 1, "threads": 4, "graceful_timeout": 5}
    server.serve(lambda: app, options)
