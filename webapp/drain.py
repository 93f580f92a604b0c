"""Shutting down in a fleet: on SIGTERM, readiness goes false first, then the worker drains.

gunicorn's worker stops accepting connections the moment it gets SIGTERM and then gives the
requests it holds `graceful_timeout` seconds to finish. A load balancer that still believes the
replica is ready meanwhile sends it new connections that are refused (nginx retries them on
another replica; a cloud load balancer may not). So with SEAFRONT_DRAIN_SECONDS the worker first
answers /readyz with 503 while it goes on serving for that long (the load balancer's readiness
check takes it out of rotation), and only then stops accepting and finishes what it holds.
"""

from __future__ import annotations

import logging
import threading

from .readtimeout import ReadTimeoutWorker
from .settings import from_env

log = logging.getLogger(__name__)
DRAINING = threading.Event()  # set in a worker once SIGTERM has arrived: /readyz answers 503


class DrainingWorker(ReadTimeoutWorker):
    """The read-timeout worker, with `drain_seconds` of readiness-false serving after SIGTERM.

    `gunicorn -k webapp.drain.DrainingWorker` takes it from SEAFRONT_DRAIN_SECONDS.
    """

    drain_seconds = float(from_env("DRAIN_SECONDS"))

    def handle_exit(self, sig, frame) -> None:
        """SIGTERM: say "not ready" at once; stop accepting only after the drain."""
        if self.drain_seconds <= 0 or DRAINING.is_set():
            super().handle_exit(sig, frame)
            return
        DRAINING.set()
        log.info(
            "Draining: /readyz answers 503 for %g s (SEAFRONT_DRAIN_SECONDS) while requests are "
            "still served; then no new connection is accepted and those in flight are finished",
            self.drain_seconds,
        )
        # gunicorn's own handler, from a timer thread: it only flags the loop and wakes it
        stop = threading.Timer(self.drain_seconds, super().handle_exit, args=(sig, frame))
        stop.daemon = True
        stop.start()


def worker_class(read_timeout: float, drain_seconds: float) -> type[DrainingWorker]:
    """A DrainingWorker class with these timeouts."""
    if read_timeout <= 0:
        raise ValueError(f"read timeout must be positive, not {read_timeout}")
    return type(
        "DrainingWorker",
        (DrainingWorker,),
        {"read_timeout": float(read_timeout), "drain_seconds": max(0.0, float(drain_seconds))},
    )
