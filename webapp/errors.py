"""Error responses: JSON under /api/, a page in the site's look elsewhere, never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

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
        return ("The form expired or was not sent from this site (missing CSRF token): "
                "reload the page and upload again.")
    limit = request.max_content_length or 0
    template = SENTENCES.get(error.code or 500, error.description or SENTENCES[500])
    return template.format(limit=f"{limit / 1_000_000:.0f} MB")


def handle_http_error(error: HTTPException):
    """Render any HTTP error as JSON or as a page."""
    sentence = _sentence(error)
    if _wants_json():
        return jsonify(error=sentence), error.code
    return render_template("error.html", code=error.code, sentence=sentence), error.code


def handle_unexpected(error: Exception):
    """Log the traceback for us; show the user a sentence."""
    log.exception("Unhandled error on %s %s", request.method, request.path)
    return handle_http_error(InternalServerError())


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
