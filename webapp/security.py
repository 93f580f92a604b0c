"""Security headers on every response, and no way to serve in debug mode or from the dev server."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import NoReturn
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

from classifier.errors import StartupError

from .errors import ForeignHostError, ForeignOriginError, ServingRefusedError

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
# The names a browser on this machine uses for a server on a loopback address. A page of any
# other site that rebinds its own name to 127.0.0.1 still sends that name as Host and Origin.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
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


def _is_local(address: str, port: int | None) -> bool:
    """True if `address` ("host" or "host:port") names this machine's loopback server on `port`
    (any port when `port` is None)."""
    try:
        parts = urlsplit(f"//{address}")
        return parts.hostname in LOOPBACK_NAMES and (port is None or parts.port == port)
    except ValueError:  # a port that is not a number, an unclosed [
        return False


def refuse_foreign_host_and_origin() -> None:
    """Refuse a request whose Host is not this loopback server, and a form post whose Origin
    (or, without one, Referer) is another site: what a DNS-rebinding page sends.

    Flask 3.1's TRUSTED_HOSTS fails while the request context is built, before url_for works, so
    its 400 could not be our page with a sentence; and it knows nothing of Origin.
    """
    port = current_app.config["LOCAL_ONLY_PORT"]
    if not _is_local(request.host, port):
        # a Host port that is no number: the address is said without one
        with contextlib.suppress(ValueError):
            port = port or urlsplit(f"//{request.host}").port
        raise ForeignHostError(
            f"This server answers only to its own address on this machine, not to Host "
            f"{request.host!r}: open http://127.0.0.1{f':{port}' if port else ''}/ instead."
        )
    if request.method not in UNSAFE_METHODS:
        return
    # a browser sends Origin with every form post; Referer is the older browsers' fallback, and
    # a client that sends neither is no browser driven by another site
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if origin is None:
        return
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not _is_local(parts.netloc, port):
        raise ForeignOriginError(
            f"A form sent from {origin!r} cannot change anything here: only this page can. "
            "Open the page from its own address and try again."
        )


def init_local_only(app: Flask, port: int | None) -> None:
    """Serve `app` to this machine's browsers only: Host must be a loopback name on `port`, and
    form posts must come from such a page (see refuse_foreign_host_and_origin)."""
    app.config["LOCAL_ONLY_PORT"] = port
    # called before CSRFProtect and the views are wired in, so that it runs before they read
    # anything of the request (after the request id, so that a refusal carries one)
    app.before_request(refuse_foreign_host_and_origin)


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
