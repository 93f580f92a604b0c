"""The secret key: from the environment, else generated once and kept in the instance folder."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from flask import Flask

SECRET_FILE = "secret_key"


def load_or_create_secret_key(instance_path: Path) -> str:
    """Read the key kept in `instance_path`, creating it (owner-only) the first time."""
    path = Path(instance_path) / SECRET_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: when several workers start at once, exactly one creates the key
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_when_written(path)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    return path.read_text().strip()


def _read_when_written(path: Path, attempts: int = 50) -> str:
    """Read the key, waiting briefly if another worker has created but not yet written it."""
    for _ in range(attempts):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it and start again, or set SEAFRONT_SECRET_KEY.")


def init_app(app: Flask) -> None:
    """Set SECRET_KEY unless the environment or the test config already did."""
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_or_create_secret_key(Path(app.instance_path))
