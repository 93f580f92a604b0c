"""The app's one Redis connection pool (SEAFRONT_REDIS_URL), shared by the result store and the
rate limits; without the setting there is none and both stay in this process's memory.

Every command is bounded: SEAFRONT_REDIS_TIMEOUT seconds to connect and as many for a reply, and
no retries (redis-py's default retries ten times with a backoff, which would hold a request
thread for seconds while Redis is down). A Redis that is down or slow costs a request that one
timeout, and only the feature that needed it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from classifier.errors import StartupError

log = logging.getLogger(__name__)
EXTENSION = "seafront.redis"
WARN_EVERY_S = 60.0  # one log line a minute while Redis stays unreachable, not one per request


def connection_pool(url: str, timeout: float) -> redis.ConnectionPool:
    """A pool for `url` whose connections give up after `timeout` seconds and never retry."""
    try:
        return redis.ConnectionPool.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
    except ValueError as error:
        raise StartupError(
            f"SEAFRONT_REDIS_URL={url!r} is not a Redis address ({error}): write it as "
            "redis://HOST:6379/0 (rediss:// with TLS), or unset it to keep state in memory."
        ) from None


class Unreachable:
    """Logs that Redis could not be reached, at most once every WARN_EVERY_S seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -WARN_EVERY_S

    def warn(self, what: str, error: Exception) -> None:
        """Say that `what` was skipped because Redis failed with `error`."""
        with self._lock:
            now = time.monotonic()
            if now - self._last < WARN_EVERY_S:
                return
            self._last = now
        log.warning(
            "Redis did not answer (%s: %s), so %s; the app goes on without it. Check that Redis "
            "runs and SEAFRONT_REDIS_URL points at it.",
            type(error).__name__,
            error,
            what,
        )


def init_app(app: Flask) -> None:
    """Make the pool when SEAFRONT_REDIS_URL is set (nothing is sent to Redis yet)."""
    url = str(app.config.get("REDIS_URL") or "").strip()
    app.extensions[EXTENSION] = (
        connection_pool(url, float(app.config["REDIS_TIMEOUT"])) if url else None
    )


def get_pool(app: Flask) -> Any:
    """The app's Redis connection pool, or None when Redis is not configured."""
    return app.extensions.get(EXTENSION)
