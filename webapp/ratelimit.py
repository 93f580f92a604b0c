"""Per-client rate limits on posting photos (SEAFRONT_RATE_LIMIT; off by default), and which
address is the client's (SEAFRONT_TRUSTED_PROXIES).

Flask-Limiter counts the page's form, /api/predict, "why?" and feedback together, per client
address. With SEAFRONT_REDIS_URL the counts live in Redis, so the limit holds across workers and
replicas; while Redis does not answer each worker counts in its own memory instead (Flask-Limiter's
in-memory fallback), so a Redis outage never refuses a request by itself. Above the limit: 429,
JSON or a page by webapp/errors.py's rule, with `Retry-After`.

Behind a proxy every request comes from the proxy's address: Werkzeug's ProxyFix takes the
client's from `X-Forwarded-For`, but only the hops the operator trusts (a client can write any
`X-Forwarded-For` it likes; each trusted proxy appends the address it saw).
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from .errors import error_response
from .redis_client import get_pool

EXTENSION = "seafront.limiter"
# the views that take a photo (or the kept one) and make the model work
LIMITED = (
    "classify.index",
    "api.predict",
    "api.predict_several",
    "examples.classify",
    "explain.why",
    "feedback.feedback",
)


def photos_sent() -> int:
    """What a request costs against the limit: one per photo it carries (several at once
    count each), at least one."""
    return max(1, len(request.files.getlist("files")), len(request.files.getlist("file")))


def trust_proxies(app: Flask) -> None:
    """Take the client's address and scheme from the last TRUSTED_PROXIES forwarding hops."""
    hops = int(app.config["TRUSTED_PROXIES"])
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def init_app(app: Flask) -> None:
    """Limit the photo-posting views per client when RATE_LIMIT is set (after the blueprints)."""
    trust_proxies(app)
    limit = str(app.config.get("RATE_LIMIT") or "").strip()
    if not limit:
        return
    pool = get_pool(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", "redis://" if pool is not None else "memory://")
    limiter = Limiter(
        get_remote_address,
        app=app,
        # one pool, one timeout policy: the limits share the result store's connections
        storage_options={"connection_pool": pool} if pool is not None else {},
        key_prefix="seafront",
        headers_enabled=False,  # Retry-After is set by too_many, equal to its sentence's wait
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    shared = limiter.shared_limit(limit, scope="photos", methods=["POST"], cost=photos_sent)
    for endpoint in LIMITED:
        view: Any = app.view_functions[endpoint]
        app.view_functions[endpoint] = shared(view)
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, too_many)


def too_many(error: RateLimitExceeded):
    """429 with a sentence that says when to try again, and Retry-After in seconds."""
    from flask import current_app

    limiter: Limiter = current_app.extensions[EXTENSION]
    current = limiter.current_limit
    wait = max(1, math.ceil(current.reset_at - time.time())) if current else 60
    sentence = (
        f"Too many photos from your address (the limit is {error.description}): "
        f"try again in {wait} s."
    )
    return error_response(sentence, 429, [("Retry-After", str(wait))])
