"""Prometheus metrics (SEAFRONT_METRICS): requests by route and status, latency, batch sizes,
queue depth, decode and forward time, model loads and reloads, and the served model's sha256.

`python application.py` runs prometheus_client in multiprocess mode: it sets
PROMETHEUS_MULTIPROC_DIR to a fresh folder before gunicorn forks (webapp/cli.py), every worker
writes its figures there, and a scrape of /metrics, whichever worker answers it, adds up all of
them (gunicorn's child_exit hook marks a dead worker's gauges gone, webapp/server.py). Without that
folder (the tests' in-process apps, plain `gunicorn application:application`) each process reports
its own figures. The figures are counts and times only: no path a client typed (an unknown
address is counted as "unmatched"), no upload, no label of anyone's photo.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from classifier.observer import ServiceObserver

OBSERVER = "seafront.observer"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter("seafront_requests", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "seafront_request_seconds", "Seconds from request to answer", ["route"], buckets=SECONDS
)
BATCH_SIZE = Histogram(
    "seafront_batch_size", "Images per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
FORWARD = Histogram("seafront_forward_seconds", "Seconds per forward pass", buckets=SECONDS)
DECODE = Histogram("seafront_decode_seconds", "Seconds to decode an upload", buckets=SECONDS)
QUEUE = Gauge(
    "seafront_queue_depth",
    "Images waiting for, or in, a forward pass (all live workers)",
    multiprocess_mode="livesum",
)
LOADS = Counter(
    "seafront_model_loads",
    "Model loads, at start-up or by a reload, ok or failed",
    ["kind", "outcome"],
)
MODEL = Gauge(
    "seafront_model_info",
    "Live workers serving the model with this sha256 (1 per worker)",
    ["sha256"],
    multiprocess_mode="livesum",
)

bp = Blueprint("metrics", __name__)


class PrometheusObserver(ServiceObserver):
    """The model layer's reports, as the metrics above."""

    def __init__(self) -> None:
        self._served: str | None = None

    def decoded(self, seconds: float) -> None:
        """An upload's decode time."""
        DECODE.observe(seconds)

    def batch_ran(self, size: int, seconds: float) -> None:
        """One forward pass: its size and time."""
        BATCH_SIZE.observe(size)
        FORWARD.observe(seconds)

    def queue_depth(self, depth: int) -> None:
        """Images this worker has waiting or running."""
        QUEUE.set(depth)

    def model_loaded(self, sha256: str, reload: bool) -> None:
        """Count the load, and move this worker's 1 from the old model's sha256 to the new."""
        LOADS.labels("reload" if reload else "start", "ok").inc()
        if self._served and self._served != sha256:
            MODEL.labels(self._served).set(0)
        MODEL.labels(sha256).set(1)
        self._served = sha256

    def model_load_failed(self, reload: bool) -> None:
        """Count a failed load."""
        LOADS.labels("reload" if reload else "start", "failed").inc()


def registry() -> CollectorRegistry:
    """Every worker's figures in multiprocess mode, else this process's."""
    if not os.environ.get(MULTIPROC_DIR):
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)
    return combined


@bp.get("/metrics")
def metrics():
    """The figures in Prometheus's text format."""
    return Response(generate_latest(registry()), mimetype=CONTENT_TYPE_LATEST)


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _answered(response: Response) -> Response:
    """Count the request under its route's pattern (never the path a client typed)."""
    route = request.url_rule.rule if request.url_rule else "unmatched"
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(route, method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        LATENCY.labels(route).observe(time.perf_counter() - started)
    return response


def init_app(app: Flask) -> None:
    """Count requests and give the model layer its observer; serve /metrics on the app's port
    unless SEAFRONT_METRICS_PORT serves it elsewhere (gunicorn's master, webapp/server.py)."""
    if not app.config["METRICS"]:
        return
    app.extensions[OBSERVER] = PrometheusObserver()
    app.before_request(_started)
    app.after_request(_answered)
    if not int(app.config["METRICS_PORT"]):
        app.register_blueprint(bp)


def observer(app: Flask) -> ServiceObserver | None:
    """The model layer's observer, when metrics are on."""
    return app.extensions.get(OBSERVER)
