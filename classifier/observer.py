"""What the model layer reports as it works, for whoever watches (metrics, a test).

The layer calls these methods; this base class does nothing with them. The web layer subclasses
it for Prometheus (webapp/metrics.py), so the model layer imports no metrics library and knows
no HTTP. Each method is called on the thread that did the work and must return at once.
"""

from __future__ import annotations


class ServiceObserver:
    """Every report is a no-op here; subclass and override the ones you want."""

    def decoded(self, seconds: float) -> None:
        """An upload was decoded in `seconds`."""

    def batch_ran(self, size: int, seconds: float) -> None:
        """A forward pass over `size` images took `seconds` (batch transforms included)."""

    def queue_depth(self, depth: int) -> None:
        """`depth` images are now waiting for, or in, a forward pass."""

    def model_loaded(self, sha256: str, reload: bool) -> None:
        """The model with this sha256 is now served (at start-up, or swapped in by a reload)."""

    def model_load_failed(self, reload: bool) -> None:
        """A model file could not be loaded (a reload keeps the previous model serving)."""
