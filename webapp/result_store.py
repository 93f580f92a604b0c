"""Results kept between the form's POST and the page's GET (post/redirect/get).

Without JavaScript the page posts the form, is redirected and then shows the result, its
thumbnail included; "why?" and feedback then need the photo again. The photo is kept here for a
while, never on disk: in this worker's memory (`ResultStore`), or with SEAFRONT_REDIS_URL in
Redis (`RedisResultStore`), where every worker and replica finds it. A random id in the user's
session points at it, and only ids from the user's own session are honoured. Both stores are
bounded in count (RESULTS_KEPT) and age (RESULTS_MAX_AGE_S).

A Redis that is down or slow costs only this feature: the POST still answers with the flashed
sentence, and "why?" and feedback say in a sentence that they cannot be used just now.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Protocol

import redis
from flask import Flask, current_app, flash, session

from .errors import StoreUnavailableError
from .redis_client import Unreachable, get_pool
from .results import YOUR_PHOTO, Bar, Result

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
UNAVAILABLE = (
    '"Why?" and the feedback buttons cannot be used just now (the server cannot reach its '
    "shared store). The answer above still holds; with JavaScript on, the buttons work anyway."
)


class Store(Protocol):
    """Where results are kept: put a new one, update one after a click, get one by id."""

    def put(self, result: Result) -> None: ...
    def update(self, result: Result) -> None: ...
    def get(self, result_id: str) -> Result | None: ...


class ResultStore:
    """At most `max_entries` results, each for at most `max_age_s` seconds, in this process's
    memory; thread-safe."""

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

    def update(self, result: Result) -> None:
        """Nothing to write back: the kept object is the one that was changed."""

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


class RedisResultStore:
    """The same bounds, in Redis: one hash per result (its fields as JSON, the photo as bytes)
    that expires after `max_age_s`, and a sorted set of ids by time that trims the oldest beyond
    `max_entries` (across every worker and replica that shares the Redis)."""

    INDEX = "seafront:results"
    PREFIX = "seafront:result:"

    def __init__(self, client: redis.Redis, max_entries: int, max_age_s: float):
        self.client = client
        self.max_entries = max(1, max_entries)
        self.max_age_s = max(1, int(max_age_s))
        self._unreachable = Unreachable()

    def put(self, result: Result) -> None:
        """Keep `result` for max_age_s, then drop the oldest beyond max_entries."""
        now = time.time()
        result.created = now
        key = self.PREFIX + result.id
        with self._answering("a result could not be kept"):
            pipe = self.client.pipeline()  # MULTI/EXEC: the hash, its expiry and its index entry
            pipe.hset(key, mapping={"meta": _meta(result), "photo": result.photo})
            pipe.expire(key, self.max_age_s)
            pipe.zadd(self.INDEX, {result.id: now})
            pipe.zremrangebyscore(self.INDEX, "-inf", now - self.max_age_s)
            pipe.zrange(self.INDEX, 0, -self.max_entries - 1)
            excess = pipe.execute()[-1]
            if excess:
                # two workers may trim the same ids at once: deleting twice is harmless
                self.client.delete(*(self.PREFIX + id_.decode() for id_ in excess))
                self.client.zrem(self.INDEX, *excess)

    def update(self, result: Result) -> None:
        """Write back what a click changed (heat map, feedback), keeping the result's expiry."""
        key = self.PREFIX + result.id
        with self._answering("a click could not be saved"):
            pipe = self.client.pipeline()
            pipe.exists(key)
            pipe.hset(key, "meta", _meta(result))
            exists, _ = pipe.execute()
            if not exists:  # it expired meanwhile: do not bring back a hash with no expiry
                self.client.delete(key)

    def get(self, result_id: str) -> Result | None:
        """The result with this id, or None when unknown or expired."""
        with self._answering("a kept result could not be read"):
            fields: dict[bytes, bytes] = self.client.hgetall(self.PREFIX + result_id)  # type: ignore[assignment]
        if b"meta" not in fields:
            return None
        return _from_meta(result_id, fields[b"meta"], fields.get(b"photo", b""))

    @contextlib.contextmanager
    def _answering(self, what: str) -> Iterator[None]:
        """Turn any Redis failure (down, slow, refused) into StoreUnavailableError, logged."""
        try:
            yield
        except redis.RedisError as error:
            self._unreachable.warn(what, error)
            raise StoreUnavailableError(UNAVAILABLE) from error


def _meta(result: Result) -> str:
    """A result's fields, without the photo, as JSON (this module owns the format)."""
    return json.dumps(
        {
            "label": result.label,
            "confidence": result.confidence,
            "bars": [[bar.label, bar.probability] for bar in result.bars],
            "class_count": result.class_count,
            "thumbnail": result.thumbnail,
            "heatmap": result.heatmap,
            "feedback": result.feedback,
            "sure": result.sure,
            "sentence": result.sentence,
            "caption": result.caption,
            "error": result.error,
            "created": result.created,
        }
    )


def _from_meta(result_id: str, meta: bytes, photo: bytes) -> Result:
    """The Result that _meta wrote, with its photo."""
    fields = json.loads(meta)
    return Result(
        label=fields["label"],
        confidence=fields["confidence"],
        bars=[Bar(label, probability) for label, probability in fields["bars"]],
        class_count=fields["class_count"],
        thumbnail=fields["thumbnail"],
        photo=photo,
        heatmap=fields["heatmap"],
        feedback=fields["feedback"],
        sure=fields.get("sure", True),
        sentence=fields.get("sentence", ""),
        caption=fields.get("caption", YOUR_PHOTO),
        error=fields.get("error", ""),
        id=result_id,
        created=fields["created"],
    )


def init_app(app: Flask) -> None:
    """Give the app its store (Redis when configured), bounded by RESULTS_KEPT and
    RESULTS_MAX_AGE_S."""
    kept, max_age = int(app.config["RESULTS_KEPT"]), float(app.config["RESULTS_MAX_AGE_S"])
    pool = get_pool(app)
    store: Store = (
        RedisResultStore(redis.Redis(connection_pool=pool), kept, max_age)
        if pool is not None
        else ResultStore(kept, max_age)
    )
    app.extensions[EXTENSION] = store


def _store() -> Store:
    """The current app's store."""
    return current_app.extensions[EXTENSION]


def remember(results: list[Result]) -> None:
    """Keep `results` (the photos of one upload) for this session; show them on the next view."""
    try:
        for result in results:
            _store().put(result)
    except StoreUnavailableError as error:
        flash(str(error), "warning")
        return
    ids = [result.id for result in results]
    kept = max(IDS_PER_SESSION, int(current_app.config["MAX_FILES"]))  # one upload's at least
    session[SESSION_IDS] = [*session.get(SESSION_IDS, []), *ids][-kept:]
    session[SESSION_GROUP] = ids
    session[SESSION_SHOW] = ids


def show_next(result: Result) -> None:
    """Show `result` (again, as changed by a click) on the next page view, with the photos
    sent together with it."""
    try:
        _store().update(result)
    except StoreUnavailableError as error:
        flash(str(error), "warning")
        return
    group = session.get(SESSION_GROUP, [])
    session[SESSION_SHOW] = group if result.id in group else [result.id]


def recall(result_id: str | None) -> Result | None:
    """This session's result with `result_id`, or None (unknown, expired, someone else's);
    StoreUnavailableError when the shared store does not answer."""
    if not result_id or result_id not in session.get(SESSION_IDS, []):
        return None
    return _store().get(result_id)


def take_shown() -> list[Result]:
    """The results to show on this page view, once (a reload shows the empty form again)."""
    shown = session.pop(SESSION_SHOW, None) or []
    if isinstance(shown, str):  # a session cookie from before several photos at once
        shown = [shown]
    try:
        return [result for result in map(recall, shown) if result is not None]
    except StoreUnavailableError as error:
        flash(str(error), "warning")
        return []
