"""Serve a Flask app with gunicorn, the production WSGI server, from a Python command line."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError

from classifier.errors import StartupError

from . import drain, readtimeout

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
log = logging.getLogger(__name__)


def configure_logging(level: int = logging.INFO) -> None:
    """Send our loggers to stderr in the same shape as gunicorn's own lines."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


class _GunicornApp(BaseApplication):
    """Gunicorn's documented hook for embedding it: options in, a WSGI app out."""

    def __init__(self, load_app: Callable[[], Any], options: dict[str, Any]):
        self._load_app = load_app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # runs in each worker after the fork (preload_app stays off), so nothing
        # before it has touched CUDA. AppImportError makes gunicorn print the
        # sentence alone and stop, instead of a traceback and a restart loop.
        try:
            app = self._load_app()
        except StartupError as error:
            raise AppImportError(str(error)) from None
        freeze_garbage_collector()
        return app


def freeze_garbage_collector() -> None:
    """Move every object alive now (torch, fastai, the model) out of the garbage collector's way.

    They live as long as the process. Without this, a worker that is told to stop spent 8 s
    collecting them at exit on the 2-core machine (py-spy: gc_collect_main during finalisation),
    and the garbage collector walks them again at every full collection while serving.
    """
    gc.collect()
    gc.freeze()


# --- gunicorn's hooks (server hooks in its documentation) -------------------------------------


def child_exit(server, worker) -> None:
    """In the master, when a worker has exited: its live gauges stop counting (metrics)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_int(worker) -> None:
    """A worker stopping at once (SIGINT or SIGQUIT): what it held is not finished."""
    log.warning("Worker %s stops at once (SIGINT/SIGQUIT): requests in flight are cut", worker.pid)


def worker_abort(worker) -> None:
    """A worker killed by the master for not answering within gunicorn's timeout."""
    log.error(
        "Worker %s did not report within gunicorn's timeout and was stopped: requests in flight "
        "were lost; a new worker starts",
        worker.pid,
    )


def metrics_on_port(port: int) -> Callable[[Any], None]:
    """A `when_ready` hook: the master serves every worker's metrics on `port` (its own thread)."""

    def when_ready(server) -> None:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
        log.info("Metrics at http://0.0.0.0:%d/metrics (SEAFRONT_METRICS_PORT)", port)

    return when_ready


def serve(load_app: Callable[[], Any], options: dict[str, Any]) -> None:
    """Run gunicorn here with `options` (gunicorn setting names) and the app from `load_app`.

    Two options are ours: `read_timeout`, the seconds a request (headers and body) may take to
    arrive before its thread gives up on it (see webapp/readtimeout.py), and `drain_seconds`,
    how long a worker goes on serving, not ready, after SIGTERM (webapp/drain.py).
    """
    options = dict(options)
    read_timeout = float(options.pop("read_timeout", readtimeout.ReadTimeoutWorker.read_timeout))
    drain_seconds = float(options.pop("drain_seconds", 0.0))
    # no control socket: it lives in $HOME, so two servers on one machine would fight over it
    defaults = {
        "worker_class": drain.worker_class(read_timeout, drain_seconds),
        "preload_app": False,
        "accesslog": "-",
        "control_socket_disable": True,
        "child_exit": child_exit,
        "worker_int": worker_int,
        "worker_abort": worker_abort,
    }
    _GunicornApp(load_app, {**defaults, **options}).run()
