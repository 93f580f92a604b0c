"""Replace a file in one step, so that a reader never sees half of it, and make it durable."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

# what a file written here may be read by: these are models, photos and labels, not secrets
FILE_MODE = 0o644


def temporary_name(path: Path) -> str:
    """The hidden prefix of a file on its way to `path` (listings skip names that start with .)."""
    return f".{path.name}."


def replace_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Let `write` fill a temporary file beside `path`, flush it to disk, then rename it over.

    The standard library has no atomic write: a temporary file in the same folder (so the same
    file system) followed by os.replace is the documented POSIX and Windows way. `write` gets the
    temporary path, for writers that insist on opening a path themselves (fastai's export).
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=temporary_name(path), suffix=".tmp"
    )
    os.close(handle)
    try:
        write(Path(temporary))
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(temporary, FILE_MODE)  # mkstemp makes it owner-only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def write_atomically(path: Path, data: bytes | str) -> Path:
    """Replace `path` with `data` (text is written as UTF-8) in one step."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return replace_atomically(path, lambda temporary: temporary.write_bytes(payload))


def move_atomically(source: Path, path: Path) -> Path:
    """Rename the finished file `source` over `path` (same file system) in one step, durably."""
    path = Path(path)
    os.replace(source, path)
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry for the renamed file, so that the rename survives a crash too."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems (Windows) cannot open a folder; the rename still happened
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
