"""The one error policy of the web layer.

- Statuses: every error the model layer (classifier/errors.py) or the web layer raises on
  purpose maps to one HTTP status here, in `STATUSES`, and nowhere else.
- JSON or page: one rule, `wants_json()`. API paths and clients that ask for JSON (the page's
  script sends `Accept: application/json`) get `{"error": sentence}`; browsers get a page in the
  site's look with the same sentence.
- Never a traceback: anything unexpected is logged with its traceback and answered 500 with a
  sentence.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    Forbidden,
    HTTPException,
    InternalServerError,
    MethodNotAllowed,
    RequestEntityTooLarge,
)

from classifier.errors import (
    DeadlineExceededError,
    DecoderBusyError,
    ExplainError,
    ImageError,
    ImageTooLargeError,
    NoModelError,
    UnsupportedImageError,
)

log = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the web layer itself refuses (400); the message says what to send instead."""


class TooManyFilesError(RequestError):
    """More photos in one request than MAX_FILES (400, like any request to send otherwise)."""


class ServingRefusedError(RuntimeError):
    """The app is served in a way it refuses (debug mode, Flask's development server): 500,
    with the sentence that says how to start it instead."""


class ForeignHostError(BadRequest):
    """A Host header naming another server than this loopback one (DNS rebinding): 400, with the
    address to open instead. An HTTPException, so that the review page's own handler shows it."""


class ForeignOriginError(Forbidden):
    """A form post sent by a page of another site: 403, whatever its CSRF token."""


class StoreUnavailableError(RuntimeError):
    """The shared store (Redis) did not answer in time; the message says what still works."""


# the first class in an error's MRO that is listed here gives its status
STATUSES: dict[type[Exception], int] = {
    ImageTooLargeError: 413,
    UnsupportedImageError: 415,
    ImageError: 400,  # empty, unreadable, damaged, or no file at all (webapp.uploads.NoFileError)
    RequestError: 400,
    ServingRefusedError: 500,
    ExplainError: 501,
    NoModelError: 503,
    DecoderBusyError: 503,
    StoreUnavailableError: 503,
    DeadlineExceededError: 504,
}
HANDLED = tuple(STATUSES)

SENTENCES = {
    400: "The request could not be understood. Go back to the form and try again.",
    404: "There is no page at this address. The upload page is at /.",
    405: "This address does not take that kind of request.",
    413: "That upload is larger than the limit of {limit}: send a smaller photo.",
    500: "Something went wrong on our side. Try again in a moment.",
}


def status_of(error: Exception) -> int:
    """The HTTP status for an error raised on purpose (500 for anything else)."""
    for kind in type(error).__mro__:
        if kind in STATUSES:
            return STATUSES[kind]
    return 500


def wants_json() -> bool:
    """API clients and the page's script get JSON; browsers get a page."""
    if request.path.startswith("/api/"):
        return True
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json"
    )


def error_response(sentence: str, status: int, headers: list[tuple[str, str]] | None = None):
    """`sentence` as JSON or as a page, by the one rule above."""
    if wants_json():
        return jsonify(error=sentence), status, headers or []
    page = render_template("error.html", code=status, sentence=sentence)
    return page, status, headers or []


def _sentence(error: HTTPException) -> str:
    """A human sentence for an HTTP error."""
    if isinstance(error, CSRFError):
        # Flask-WTF says which check failed, e.g. "The CSRF token is missing."
        reason = (error.description or "").rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        return (
            f"The form expired or was not sent from this site ({reason}): "
            "reload the page and upload again."
        )
    if isinstance(error, (ForeignHostError, ForeignOriginError)):
        return error.description or SENTENCES[400]
    if isinstance(error, ClientDisconnected):
        return (
            "The upload did not arrive completely (the connection was cut, or it was too "
            "slow): send the photo again."
        )
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        methods = [m for m in error.valid_methods if m not in ("HEAD", "OPTIONS")]
        return f"This address takes {' or '.join(sorted(methods))} requests only."
    limit = request.max_content_length or 0
    length = request.content_length
    if isinstance(error, RequestEntityTooLarge) and length is not None and length <= limit:
        # Werkzeug's own form limits, not the upload size, refused this one
        return (
            f"The form has too many parts (more than {request.max_form_parts:,}) or a field "
            f"larger than {size_in_words(request.max_form_memory_size or 0)}: send one photo "
            "per file field."
        )
    template = SENTENCES.get(error.code or 500, error.description or SENTENCES[500])
    return template.format(limit=size_in_words(limit))


def size_in_words(limit: int) -> str:
    """A byte count as people read it: 20 MB, 500 kB, 900 bytes."""
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):.0f} MB"
    if limit >= 1024:
        return f"{limit / 1024:.0f} kB"
    return f"{limit} bytes"


def handle_http_error(error: HTTPException):
    """Render any HTTP error (404, 405, 413, a CSRF failure...) as JSON or as a page."""
    headers = [(name, value) for name, value in error.get_headers() if name != "Content-Type"]
    return error_response(_sentence(error), error.code or 500, headers)


def handle_raised(error: Exception):
    """An error raised on purpose: its own sentence, with the status STATUSES gives it."""
    status = status_of(error)
    # a 503 is a moment's business (busy decoders, a model on its way): say when to come back
    return error_response(str(error), status, [("Retry-After", "5")] if status == 503 else None)


def handle_unexpected(error: Exception):
    """Log the traceback for us; show the user a sentence."""
    if isinstance(error, ParseException):
        # gunicorn found the body's framing broken while the app read it (a chunk size of
        # `zz`, a missing CRLF): the client's mistake, not ours
        return error_response(
            "The request body's framing is broken (a malformed chunked encoding): send the "
            "photo again.",
            BadRequest.code,
        )
    log.exception("Unhandled error on %s %s", request.method, request.path)
    return handle_http_error(InternalServerError())


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, handle_http_error)
    for kind in HANDLED:
        app.register_error_handler(kind, handle_raised)
    app.register_error_handler(Exception, handle_unexpected)
