"""The model card, models/export.json: what a model is, how it was trained and how it scored."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file at `path`."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def utc_now() -> str:
    """The current time as ISO-8601 UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` so that a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def read_card(path: Path) -> dict[str, Any]:
    """The model card at `path`."""
    return json.loads(path.read_text(encoding="utf-8"))
