"""Results kept in memory between the form's POST and the page's GET (post/redirect/get).

Without JavaScript the page posts the form, is redirected and then shows the result, its
thumbnail included; "why?" and feedback then need the photo again. The photo is kept here, in
this worker's memory only, for a while: never on disk. A random id in the user's session points
at it, and only ids from the user's own session are honoured. The store is bounded in count and
age; with several gunicorn workers the GET may land on a worker that lacks the result, and the
page then shows the flashed sentence alone.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from flask import Flask, current_app, session

from .results import Result

EXTENSION = "seafront.results"
SESSION_IDS = "result_ids"  # the user's recent results, newest last
SESSION_SHOW = "result_show"  # the results the next page view shows
SESSION_GROUP = "result_group"  # the results of the last upload, shown together
# enough for a few uploads of several photos; each id costs the session cookie 25 bytes
IDS_PER_SESSION = 32
GONE = (
    "That photo is no longer kept in memory (results are kept for a few minutes): "
    "upload it again, then press the button."
)


class ResultStore:
    """At most `max_entries` results, each for at most `max_age_s` seconds; thread-safe."""

    def __init__(
        self, max_entries: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ):
        self.max_entries = max(1, max_entries)
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: OrderedDict[str, Result] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, result: Result) -> None:
        """Keep `result`, dropping the oldest ones beyond the bound."""
        with self._lock:
            result.created = self._clock()
            self._entries[result.id] = result
            self._expire()
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get(self, result_id: str) -> Result | None:
        """The result with this id, or None when unknown or too old."""
        with self._lock:
            self._expire()
            return self._entries.get(result_id)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def _expire(self) -> None:
        """Drop the results older than max_age_s (the oldest are first)."""
        cutoff = self._clock() - self.max_age_s
        while self._entries and next(iter(self._entries.values())).created < cutoff:
            self._entries.popitem(last=False)


def init_app(app: Flask) -> None:
    """Give the app its store, bounded by RESULTS_KEPT and RESULTS_MAX_AGE_S."""
    app.extensions[EXTENSION] = ResultStore(
        int(app.config["RESULTS_KEPT"]), float(app.config["RESULTS_MAX_AGE_S"])
    )


def _store() -> ResultStore:
    """The current app's store."""
    return current_app.extensions[EXTENSION]


def remember(results: list[Result]) -> None:
    """Keep `results` (the photos of one upload) for this session; show them on the next view."""
    for result in results:
        _store().put(result)
    ids = [result.id for result in results]
    kept = max(IDS_PER_SESSION, int(current_app.config["MAX_FILES"]))  # one upload's at least
    session[SESSION_IDS] = [*session.get(SESSION_IDS, []), *ids][-kept:]
    session[SESSION_GROUP] = ids
    session[SESSION_SHOW] = ids


def show_next(result: Result) -> None:
    """Show `result` (again) on the next page view, with the photos sent together with it."""
    group = session.get(SESSION_GROUP, [])
    session[SESSION_SHOW] = group if result.id in group else [result.id]


def recall(result_id: str | None) -> Result | None:
    """This session's result with `result_id`, or None (unknown, expired, someone else's)."""
    if not result_id or result_id not in session.get(SESSION_IDS, []):
        return None
    return _store().get(result_id)


def take_shown() -> list[Result]:
    """The results to show on this page view, once (a reload shows the empty form again)."""
    shown = session.pop(SESSION_SHOW, None) or []
    if isinstance(shown, str):  # a session cookie from before several photos at once
        shown = [shown]
    return [result for result in map(recall, shown) if result is not None]
