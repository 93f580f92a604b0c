"""Give the memory of a large decoded image back to the operating system once it is freed.

glibc keeps freed heap memory for reuse, per thread arena: after a burst of large uploads on 8
request threads, a worker stayed gigabytes above its size while idle. `malloc_trim(0)` returns
the free pages of every arena. Python has no binding for it, hence ctypes. Elsewhere (musl,
macOS) there is no such call and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
