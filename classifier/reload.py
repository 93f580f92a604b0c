"""Notice that the model file was replaced, cheaply: each look is two os.stat calls and no read.

ModelService looks on a timer of its own (SEAFRONT_MODEL_RELOAD_INTERVAL), so /healthz and
/model are current even when no prediction comes in.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .integrity import FileState


class ModelFileWatch:
    """Says when the model file (or its card) has changed since it was read and has settled.

    "Settled" means two looks in a row (an interval apart) saw the same state, so a file that is
    still being copied is not read half-written. A state that failed to load is not retried until
    the file changes again, so a refusal is logged once, not once a look.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._served: FileState | None = None
        self._seen: FileState | None = None
        self._loading = False

    def served(self, state: FileState) -> None:
        """Record the state of the file the current model (or the failed attempt) came from."""
        with self._lock:
            self._served = self._seen = state
            self._loading = False

    def due(self) -> FileState | None:
        """Look once: the new state when a reload should start now (then call served())."""
        with self._lock:
            if self._loading:
                return None
            state = FileState.of(self.path)
            settled, self._seen = state == self._seen, state
            if not settled or state == self._served or state.model is None:
                return None
            self._loading = True
            return state
