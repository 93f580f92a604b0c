"""`python application.py`: the flags (from the settings table), then gunicorn with the app."""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import math
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .settings import BY_KEY, SETTINGS, TRUE_WORDS, Setting, from_env

FLAGGED: tuple[Setting, ...] = tuple(setting for setting in SETTINGS if setting.flag)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, each defaulting to its environment variable, then to the table's default."""
    parser = argparse.ArgumentParser(
        prog="application.py",
        description="Serve a fastai image classifier (models/export.pkl) with gunicorn: a page at "
        "/ and a JSON API at /api/predict. Every flag also has an environment variable; the "
        "flag wins. More settings are environment variables only (README, Configuration).",
    )
    for setting in FLAGGED:
        parser.add_argument(
            setting.flag,
            dest=setting.key.lower(),
            metavar=setting.key,
            default=os.environ.get(setting.env, setting.default),
            type=type(setting.default),
            help=f"{setting.help} (env {setting.env}, default {setting.shown_default})",
        )
    return parser.parse_args(argv)


def port_problem(host: str, port: int) -> str:
    """Why gunicorn could not listen on `host`:`port`, as a sentence, or '' when it can.

    Tried the way gunicorn binds (SO_REUSEADDR), so a port held only by closing connections
    passes, as it would for gunicorn. Otherwise gunicorn retries a busy port five times and
    exits saying "Connection in use" without suggesting another port.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as error:
        return f"Cannot listen on {host!r} ({error}): use --host 127.0.0.1, or 0.0.0.0 for all."
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return (
                f"Port {port} on {host} is already in use by another program (on a Mac, "
                f"AirPlay Receiver takes port 5000): start on another one, e.g. "
                f"`python application.py --port {port + 1}`."
            )
        if error.errno == errno.EACCES:
            return (
                f"Port {port} needs administrator rights (ports below 1024 do): use a port "
                f"from 1024 up, e.g. `--port 5000`."
            )
        return f"Cannot listen on {host}:{port} ({error.strerror}): check --host and --port."
    return ""


def serves_local_only(host: str) -> bool:
    """Whether the app answers to loopback names only: SEAFRONT_LOCAL_ONLY, where `auto` means
    listening on a loopback `host` with no proxy in front (a proxy sends the public name)."""
    setting = str(from_env("LOCAL_ONLY")).strip().lower()
    if setting != "auto":
        return setting in TRUE_WORDS
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may be this machine's public one
        loopback = False
    return loopback and int(from_env("TRUSTED_PROXIES")) == 0


def main(argv: list[str] | None = None) -> int:
    """Serve with gunicorn (one process per worker, threads inside each)."""
    args = parse_args(argv)
    # before anything slow is imported, so a busy port is said at once
    problem = port_problem(args.host, args.port)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    # gunicorn and the app are imported only now, so that --help answers at once. The model
    # layer (torch, fastai) is imported here in gunicorn's master, before the fork, so that a
    # worker (or its replacement after a crash) starts in a second instead of importing torch
    # for several; nothing here touches CUDA (tests/test_cuda.py checks that).
    import classifier.service  # noqa: F401

    from . import create_app, server

    server.freeze_garbage_collector()  # the master's imports too: it exits in a moment, not 7 s

    # the workers build the app from the environment, so the flags travel through it
    for setting in FLAGGED:
        value = getattr(args, setting.key.lower())
        if setting.key == "MODEL_PATH" and value != setting.default:
            value = Path(value).resolve()  # a path typed or set by the user: from where they are
        os.environ[setting.env] = str(value)
    os.environ[BY_KEY["LOCAL_ONLY"].env] = str(serves_local_only(args.host)).lower()
    server.configure_logging()
    with metrics_folder():
        server.serve(
            create_app,
            {
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "threads": args.threads,
                "read_timeout": float(args.read_timeout),
                "timeout": 120,
                **fleet_options(),
            },
        )
    return 0


# gunicorn's default access line, and the request id the app echoes (webapp/requestlog.py)
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
ACCESS_LOG_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
)


def fleet_options() -> dict[str, Any]:
    """gunicorn's options from the settings its master reads: shutting down, logs, metrics."""
    from . import server

    drain_seconds = float(from_env("DRAIN_SECONDS"))
    access = str(from_env("ACCESS_LOG")).strip().lower()
    options: dict[str, Any] = {
        "drain_seconds": drain_seconds,
        # the master waits this long for the workers after SIGTERM, the drain included
        "graceful_timeout": math.ceil(drain_seconds + float(from_env("GRACEFUL_TIMEOUT"))),
        # `json` is written by the app itself, with the request id (webapp/requestlog.py)
        "accesslog": "-" if access == "text" else None,
        "access_log_format": ACCESS_LOG_FORMAT,
    }
    port = int(from_env("METRICS_PORT"))
    if from_env("METRICS") and port:
        options["when_ready"] = server.metrics_on_port(port)
    return options


@contextlib.contextmanager
def metrics_folder() -> Iterator[None]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers' metrics, set before they fork and
    removed afterwards (figures left from an earlier run would be counted again)."""
    folder = tempfile.mkdtemp(prefix="seafront-metrics-")
    before = os.environ.get(MULTIPROC_DIR)
    os.environ[MULTIPROC_DIR] = folder
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = before
