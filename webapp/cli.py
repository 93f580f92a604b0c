"""`python application.py`: the flags (from the settings table), then gunicorn with the app."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .settings import SETTINGS, Setting

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


def main(argv: list[str] | None = None) -> int:
    """Serve with gunicorn (one process per worker, threads inside each)."""
    args = parse_args(argv)
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
    server.configure_logging()
    server.serve(
        create_app,
        {
            "bind": f"{args.host}:{args.port}",
            "workers": args.workers,
            "threads": args.threads,
            "read_timeout": float(args.read_timeout),
            "timeout": 120,
            "graceful_timeout": 10,
        },
    )
    return 0
