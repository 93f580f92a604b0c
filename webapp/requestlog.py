"""A request id on every request, and the structured access log (SEAFRONT_ACCESS_LOG=json).

The id comes from the client's or the proxy's `X-Request-ID` when it is a plain token (nginx
sends its `$request_id`), else it is generated; either way it is echoed in the response's
`X-Request-ID`, so a user's complaint, nginx's log and this app's log name the same request.
With `json`, each request is one line of JSON on stderr: time, request id, client, method,
route, path, status, bytes and seconds (gunicorn's own access line is then off, webapp/cli.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # anything else could forge log lines
access_log = logging.getLogger("seafront.access")


def request_id() -> str:
    """This request's id (made by `_start`)."""
    return g.get("request_id", "")


def _start() -> None:
    sent = request.headers.get(HEADER, "")
    g.request_id = sent if ACCEPTED.fullmatch(sent) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _echo(response: Response) -> Response:
    response.headers[HEADER] = request_id()
    return response


def _log(response: Response) -> Response:
    """One JSON line for this request."""
    access_log.info(
        json.dumps(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "request_id": request_id(),
                "client": request.remote_addr,
                "method": request.method,
                "route": request.url_rule.rule if request.url_rule else None,
                "path": request.path,
                "status": response.status_code,
                "bytes": response.calculate_content_length(),
                "seconds": round(time.perf_counter() - g.get("request_started", 0.0), 4),
                "pid": os.getpid(),
            }
        )
    )
    return response


def _json_lines_to_stderr() -> None:
    """The access logger writes its JSON alone on each line (once per process)."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def init_app(app: Flask) -> None:
    """Give every request an id, echo it, and log it as JSON when ACCESS_LOG is `json`."""
    app.before_request(_start)
    app.after_request(_echo)
    if str(app.config["ACCESS_LOG"]).strip().lower() == "json":
        _json_lines_to_stderr()
        app.after_request(_log)
