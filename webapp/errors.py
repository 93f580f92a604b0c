"""Error responses: JSON under /api/, a page in the site's look elsewhere, never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import ClientDisconnected, HTTPException, InternalServerError

log = logging.getLogger(__name__)

SENTENCES = {
    400: "The request could not be understood. Go back to the form and try again.",
    404: "There is no page at this address. The upload page is at /.",
    405: "This address does not take that kind of request.",
    413: "That upload is larger than the limit of {limit}: send a smaller photo.",
    500: "Something went wrong on our side. Try again in a moment.",
}


def _wants_json() -> bool:
    """API clients get JSON; browsers get a page."""
    return request.path.startswith("/api/")


def _sentence(error: HTTPException) -> str:
    """A human sentence for an HTTP error."""
    if isinstance(error, CSRFError):
        # Flask-WTF says which check failed, e.g. "The CSRF token is missing."
        reason = (error.description or "").rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        return (f"The form expired or was not sent from this site ({reason}): "
                "reload the page and upload again.")
    if isinstance(error, ClientDisconnected):
        return ("The upload did not arrive completely (the connection was cut, or it was too "
                "slow): send the photo again.")
    limit = request.max_content_length or 0
    template = SENTENCES.get(error.code or 500, error.description or SENTENCES[500])
    return template.format(limit=_size(limit))


def _size(limit: int) -> str:
    """A byte count as people read it: 20 MB, 500 kB, 900 bytes."""
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):.0f} MB"
    if limit >= 1024:
        return f"{limit / 1024:.0f} kB"
    return f"{limit} bytes"


def _headers(error: HTTPException) -> list[tuple[str, str]]:
    """The headers the error itself calls for, e.g. Allow on a 405."""
    return [(name, value) for name, value in error.get_headers() if name != "Content-Type"]


def handle_http_error(error: HTTPException):
    """Render any HTTP error as JSON or as a page."""
    sentence = _sentence(error)
    if _wants_json():
        return jsonify(error=sentence), error.code, _headers(error)
    page = render_template("error.html", code=error.code, sentence=sentence)
    return page, error.code, _headers(error)


def handle_unexpected(error: Exception):
    """Log the traceback for us; show the user a sentence."""
    log.exception("Unhandled error on %s %s", request.method, request.path)
    return handle_http_error(InternalServerError())


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
