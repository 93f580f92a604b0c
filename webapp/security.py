"""Security headers on every response, and no way to serve in debug mode or from the dev server."""

from __future__ import annotations

import logging
import os
from typing import NoReturn

from flask import Flask, Response, current_app, request

from classifier.errors import StartupError

from .errors import ServingRefusedError

log = logging.getLogger(__name__)

# Everything the pages use is served from this site: Bootstrap-Flask's local assets, our CSS and
# JS files. No inline scripts or styles (no 'unsafe-inline'), so injected markup cannot run.
# data: images are allowed for server-made thumbnails and heat maps and Bootstrap's inline SVG
# icons in its CSS; blob: for the page's preview of the photo chosen (URL.createObjectURL).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # browsers must take our Content-Type at its word: an upload is never sniffed into HTML
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors above for current browsers, X-Frame-Options for older ones
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: Flask-WTF checks the Referer of form posts over HTTPS
    "Referrer-Policy": "same-origin",
}
DEBUG_REFUSED = (
    "Debug mode is on (FLASK_DEBUG, SEAFRONT_DEBUG or DEBUG=True): it shows tracebacks and an "
    "interactive console to anyone who can reach the app. This app has no debug mode: unset it "
    "and start again; errors are logged with their traceback anyway."
)
DEV_SERVER_REFUSED = (
    "Flask's development server is not for serving this app (it is single-purpose, slow and "
    "unhardened): start it with `python application.py`, which runs gunicorn."
)


def add_security_headers(response: Response) -> Response:
    """Set the security headers, leaving any a view has set on purpose."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def refuse_unsafe_serving() -> None:
    """Refuse requests when debug was switched on after start-up, or the dev server serves us.

    The page (or the JSON error) says why and how to start the app instead, not only the log.
    """
    if current_app.debug:
        log.error(DEBUG_REFUSED)
        raise ServingRefusedError(DEBUG_REFUSED)
    # tests may serve the app from a Werkzeug server in a thread; production never
    if not current_app.testing and request.environ.get("SERVER_SOFTWARE", "").startswith(
        "Werkzeug/"
    ):
        log.error(DEV_SERVER_REFUSED)
        raise ServingRefusedError(DEV_SERVER_REFUSED)


def _refuse_run(*args, **kwargs) -> NoReturn:
    """Stands in for Flask.run, which would start the development server."""
    raise StartupError(DEV_SERVER_REFUSED)


def _started_by_flask_run() -> bool:
    """True while `flask run` (Flask's development server command) is building the app."""
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return False
    import click  # Flask's own command line library; only `flask ...` commands get here

    context = click.get_current_context(silent=True)
    return context is not None and context.command.name == "run"


def init_app(app: Flask) -> None:
    """Refuse debug mode and `flask run` now, and add the headers and the serving checks to
    every request."""
    if _started_by_flask_run():  # `flask run --debug` too: the way to start it is the same
        import click

        # click prints "Error: <sentence>" and exits 1, where a StartupError would be a traceback
        raise click.ClickException(DEV_SERVER_REFUSED)
    if app.debug:
        raise StartupError(DEBUG_REFUSED)
    app.run = _refuse_run  # type: ignore[method-assign]
    app.before_request(refuse_unsafe_serving)
    app.after_request(add_security_headers)
