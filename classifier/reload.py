"""Notice that the model file was replaced, cheaply: one os.stat per interval at most."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .integrity import FileState


class ModelFileWatch:
    """Says when the model file (or its card) has changed since it was read and has settled.

    "Settled" means two looks an interval apart saw the same state, so a file that is still
    being copied is not read half-written. A state that failed to load is not retried until the
    file changes again.
    """

    def __init__(self, path: Path, interval_s: float = 1.0):
        self.path = Path(path)
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._served: FileState | None = None
        self._seen: FileState | None = None
        self._next_look = 0.0
        self._loading = False

    def served(self, state: FileState) -> None:
        """Record the state of the file the current model (or the failed attempt) came from."""
        with self._lock:
            self._served = self._seen = state
            self._loading = False
            self._next_look = time.monotonic() + self.interval_s

    def due(self) -> FileState | None:
        """The new state when a reload should start now (the caller must then call served())."""
        if self.interval_s <= 0 or time.monotonic() < self._next_look:
            return None  # the common case: no lock, no system call
        with self._lock:
            now = time.monotonic()
            if now < self._next_look or self._loading:
                return None
            self._next_look = now + self.interval_s
            state = FileState.of(self.path)
            settled, self._seen = state == self._seen, state
            if not settled or state == self._served or state.model is None:
                return None
            self._loading = True
            return state
