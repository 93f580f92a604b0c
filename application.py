#!/usr/bin/env python
"""brighton-seafront: serve a fastai image classifier from a Flask page and a JSON API.

`python application.py` serves it with gunicorn (webapp/cli.py); `gunicorn application:application`
does too. The app itself is built by `webapp.create_app`.
"""

from __future__ import annotations

import sys
from typing import Any

from webapp import create_app
from webapp.cli import main

__all__ = ["create_app", "main"]


def __getattr__(name: str) -> Any:
    """`application`, the WSGI callable gunicorn and Elastic Beanstalk look for, made on first use.

    Built lazily so that importing this module (tests, `python application.py`'s gunicorn
    master) loads no model and touches no GPU before the workers fork.
    """
    if name != "application":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from webapp.server import configure_logging

    configure_logging()  # under plain `gunicorn application:application` too
    app = globals()["application"] = create_app()
    return app


if __name__ == "__main__":
    sys.exit(main())
