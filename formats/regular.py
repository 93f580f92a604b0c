"""Read a file we did not write (the model, its card, a report) without ever blocking: a regular
file only, never a FIFO, a device or a socket, and never more than a cap.

`Path.read_bytes()` on a FIFO waits for a writer for ever, and on a link to /dev/zero reads until
memory runs out. So the path is resolved and stat'ed first (a non-regular file is refused before
it is even opened: opening some devices does something), then opened with O_NONBLOCK and
O_NOFOLLOW (a link swapped in after the check is not followed), and the opened descriptor is
checked again with fstat before a byte is read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_OPEN_FLAGS = (
    os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


class RefusedFileError(ValueError):
    """The path exists but is not a regular file we may read; the message says what it is."""


class FileTooLargeError(RefusedFileError):
    """The file is larger than the cap."""

    def __init__(self, message: str, size: int, max_bytes: int):
        super().__init__(message)
        self.size, self.max_bytes = size, max_bytes


def dangling_link(path: Path) -> str | None:
    """A sentence when `path` is a symbolic link to nothing, else None."""
    path = Path(path)
    if not path.is_symlink() or path.exists():
        return None
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return f"{path} is a symbolic link to {target}, which does not exist"


def read_regular_file(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at `path` (links resolved) and its fstat, read at most once.

    FileNotFoundError when nothing is there; RefusedFileError for a dangling link or anything
    but a regular file; FileTooLargeError above `max_bytes`; other OSErrors as they come.
    """
    path = Path(path)
    try:
        resolved = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        reason = dangling_link(path)
        if reason:
            raise RefusedFileError(reason) from None
        raise
    except OSError as error:  # a loop of links, or a component that is not a folder
        raise RefusedFileError(f"{path} cannot be resolved ({error.strerror})") from None
    _check(path, resolved, os.stat(resolved), max_bytes)
    try:
        descriptor = os.open(resolved, _OPEN_FLAGS)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):  # swapped for a link or a socket
            raise RefusedFileError(
                f"{path} changed while it was being opened ({error.strerror})"
            ) from None
        raise
    with os.fdopen(descriptor, "rb") as file:
        opened = os.fstat(descriptor)
        _check(path, resolved, opened, max_bytes)
        data = file.read(max_bytes + 1)  # a file that grows after the fstat stops at the cap
    if len(data) > max_bytes:
        raise _too_large(path, len(data), max_bytes)
    return data, opened


def _check(path: Path, resolved: str, info: os.stat_result, max_bytes: int) -> None:
    """RefusedFileError unless `info` is a regular file of at most `max_bytes`."""
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        if Path(resolved) == path.absolute():
            raise RefusedFileError(f"{path} is {kind}, not a regular file")
        link = "is a symbolic link to" if path.is_symlink() else "resolves to"
        raise RefusedFileError(f"{path} {link} {resolved}, which is {kind}, not a regular file")
    if info.st_size > max_bytes:
        raise _too_large(path, info.st_size, max_bytes)


def _too_large(path: Path, size: int, max_bytes: int) -> FileTooLargeError:
    """The error for a file of `size` bytes over the cap."""
    return FileTooLargeError(
        f"{path} is {format_size(size)} ({size} bytes), over the limit of {max_bytes} bytes "
        f"({format_size(max_bytes)})",
        size,
        max_bytes,
    )


def format_size(size: int) -> str:
    """A size as people read it: 812 bytes, 43.6 MB, 2 GB (binary units, as the settings)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
