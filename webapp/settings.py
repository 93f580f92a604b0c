"""Every setting of the app, declared once: its config key, environment variable, flag, default
and meaning. The app's defaults, `python application.py`'s flags and their --help, the model
layer's ServiceSettings and the README's configuration table all come from this table (a test
holds the README to it). Imports nothing heavy, so `--help` answers at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "SEAFRONT"
MB = 1024 * 1024
GB = 1024 * MB


@dataclass(frozen=True)
class Setting:
    """One setting: config key `key`, environment variable SEAFRONT_<key>, optional flag."""

    key: str
    default: Any
    help: str
    flag: str = ""  # the flag of `python application.py`, e.g. --port

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return f"{ENV_PREFIX}_{self.key}"

    @property
    def shown_default(self) -> str:
        """The default as --help and the README write it: 60, not 60.0; true, not True."""
        if self.default is None:
            return "generated"
        if self.default == "":
            return "unset"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)


SETTINGS: tuple[Setting, ...] = (
    # the server: these have flags, and gunicorn's master reads them before any worker starts
    Setting(
        "HOST",
        "127.0.0.1",
        "address to listen on; `--host 0.0.0.0` on a cloud server",
        flag="--host",
    ),
    Setting("PORT", 5000, "port to listen on", flag="--port"),
    Setting(
        "MODEL_PATH",
        "models/export.pkl",
        "the fastai export to serve; the default is the app's own `models/export.pkl`",
        flag="--model",
    ),
    Setting("DEVICE", "auto", "`auto`, `cpu`, `cuda` or `cuda:N`; see GPU server", flag="--device"),
    Setting(
        "WORKERS",
        1,
        "gunicorn worker processes, each with its own copy of the model",
        flag="--workers",
    ),
    Setting(
        "THREADS",
        8,
        "request threads per worker: requests one worker handles at once",
        flag="--threads",
    ),
    Setting(
        "READ_TIMEOUT",
        60.0,
        "seconds a request (headers and body) may take to arrive; a slower client is cut off",
        flag="--read-timeout",
    ),
    # the app
    Setting(
        "SECRET_KEY",
        None,
        "session and CSRF key; when unset it is generated once and "
        "kept in `instance/secret_key` (owner-only), so restarts and workers agree",
    ),
    Setting("INSTANCE_PATH", "instance", "where that key is kept"),
    Setting("SESSION_COOKIE_SECURE", False, "set `true` behind HTTPS"),
    Setting("MAX_CONTENT_LENGTH", 20 * MB, "largest upload in bytes (20 MB); above it: 413"),
    Setting("MAX_PIXELS", 50_000_000, "largest image in pixels (decompression bombs): 413"),
    Setting(
        "MAX_FILES",
        10,
        "most photos classified at once (the page's several photos, `/api/predict/several`); "
        "more: 400. Together they must fit in MAX_CONTENT_LENGTH",
    ),
    Setting(
        "MIN_CONFIDENCE",
        0.0,
        "below this probability for the likeliest class the page says the model is not sure "
        'instead of naming a class, and the API answers `"sure": false`; `0`: off '
        "(see Not sure)",
    ),
    Setting(
        "REQUEST_TIMEOUT",
        60.0,
        "seconds a request may wait for the model; past it the "
        "request is dropped unrun and answered 504",
    ),
    Setting(
        "MAX_DECODES",
        2,
        "uploads each worker decodes at once; others wait for a turn (up to "
        "`SEAFRONT_REQUEST_TIMEOUT`, then 503), so large photos can't take every request thread",
    ),
    Setting(
        "RELEASE_MEMORY",
        True,
        "after decoding a large image (4 MP or more), give the memory it freed back to the "
        "system (glibc's `malloc_trim`), so that a worker shrinks back after a burst of large "
        "uploads; `false`: glibc keeps it for reuse",
    ),
    Setting(
        "KEEP_UPLOADS", False, "keep each classified upload under `uploads/` with a generated name"
    ),
    Setting(
        "UPLOAD_FOLDER",
        "uploads",
        "where kept uploads go (and feedback photos, by default); a shared volume for several "
        "replicas (see Run more than one)",
    ),
    Setting(
        "FEEDBACK_FOLDER",
        "feedback",
        "where feedback photos go, in one folder per class; a relative path is inside "
        "`SEAFRONT_UPLOAD_FOLDER`",
    ),
    Setting(
        "UPLOADS_MAX_FILES", 1000, "files kept in the uploads folder; the oldest are rotated out"
    ),
    Setting("UPLOADS_MAX_BYTES", 500 * MB, "bytes kept in the uploads folder (500 MB)"),
    Setting("FEEDBACK", True, 'show the "Wrong? It is a ..." buttons'),
    Setting(
        "FEEDBACK_MAX_FILES",
        1000,
        "feedback photos kept in all (`uploads/feedback/<class>/`); the oldest are rotated out",
    ),
    Setting("FEEDBACK_MAX_BYTES", 200 * MB, "bytes of feedback photos kept (200 MB)"),
    Setting(
        "RESULTS_KEPT",
        64,
        "results kept for the page without JavaScript: per worker in memory, or in all in Redis "
        "with `SEAFRONT_REDIS_URL`",
    ),
    Setting("RESULTS_MAX_AGE_S", 900, "seconds such a result is kept"),
    # a fleet: shared state, limits, metrics, shutting down (see Run more than one)
    Setting(
        "REDIS_URL",
        "",
        "Redis shared by every worker and replica (e.g. `redis://redis:6379/0`) for the results "
        "kept for the page without JavaScript and the rate limits; unset: each worker's memory",
    ),
    Setting(
        "REDIS_TIMEOUT",
        0.5,
        "seconds to connect to Redis and for each reply; past it the request goes on without "
        "the feature that needed Redis",
    ),
    Setting(
        "RATE_LIMIT",
        "",
        "per-client limit on posting photos (the page, /api/predict, Why?, feedback) in "
        "Flask-Limiter's notation, e.g. `30/minute;500/hour`; above it: 429; unset: no limit",
    ),
    Setting(
        "TRUSTED_PROXIES",
        0,
        "proxies in front of the app whose `X-Forwarded-For` and `X-Forwarded-Proto` are "
        "believed (`1` behind one nginx); `0`: the connection's own address is the client",
    ),
    Setting(
        "LOCAL_ONLY",
        "auto",
        "answer only to the names `127.0.0.1`, `localhost` and `[::1]`, and refuse posts sent by "
        "pages of other sites (DNS rebinding); `auto`: on when `python application.py` listens "
        "on a loopback address with `SEAFRONT_TRUSTED_PROXIES=0`, else off",
    ),
    Setting("METRICS", True, "serve Prometheus metrics (requests, latency, batches, the model)"),
    Setting(
        "METRICS_PORT",
        0,
        "serve the metrics on this port (all interfaces) instead of at the app's `/metrics`; "
        "`0`: at `/metrics`",
    ),
    Setting(
        "DRAIN_SECONDS",
        0.0,
        "after SIGTERM, seconds `/readyz` answers 503 while requests are still served, so that "
        "a load balancer stops sending before the app stops listening",
    ),
    Setting(
        "GRACEFUL_TIMEOUT",
        30.0,
        "after SIGTERM and the drain, seconds the requests already accepted get to finish; "
        "then the workers are killed",
    ),
    Setting(
        "ACCESS_LOG",
        "text",
        "`text` (gunicorn's line per request), `json` (one JSON object per request, with its "
        "request id) or `off`",
    ),
    # the model (ServiceSettings)
    Setting(
        "MODEL_RELOAD_INTERVAL",
        1.0,
        "seconds between looks for a replaced model file (picked up without a restart); `0`: never",
    ),
    Setting(
        "MODEL_MAX_BYTES",
        2 * GB,
        "largest model file in bytes (2 GB); a larger one, or anything but a regular file, is "
        "refused unread",
    ),
    Setting("MAX_BATCH_SIZE", 8, "most images in one forward pass (see Performance)"),
    Setting(
        "MAX_WAIT_MS",
        50.0,
        "most a busy forward pass waits for more images to batch (a "
        "lone request never waits; see Performance)",
    ),
    Setting(
        "DRAFT_DECODE",
        True,
        "decode large JPEGs at reduced scale when the model's input size allows",
    ),
    Setting("TORCH_THREADS", 0, "torch threads per worker; `0` means cores ÷ workers"),
    Setting(
        "PRECISION",
        "auto",
        "`auto`, `fp32`, `bf16` or `fp16`; `auto` is bf16 on a CPU with AVX512-BF16 or AMX and on "
        "a GPU with compute capability 8.0 or newer (fp16 on older GPUs), else fp32; reduced "
        "precision only if the model agrees with fp32 at load (see Performance)",
    ),
    Setting(
        "BACKEND",
        "auto",
        "`auto`, `torch`, `onnxruntime` or `openvino`: what runs the model; `auto` exports it at "
        "load and serves with the fastest that agrees with fp32 (torch on a GPU; see Performance)",
    ),
)
BY_KEY: dict[str, Setting] = {setting.key: setting for setting in SETTINGS}

# Flask and extension settings the app fixes: they are not for users to change
FIXED_CONFIG: dict[str, Any] = {
    "BOOTSTRAP_SERVE_LOCAL": True,
    # a page left open for hours should still post; the token lives as long as the session
    "WTF_CSRF_TIME_LIMIT": None,
    # the session holds the CSRF token: never sent on cross-site posts, never read by scripts
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
}


def default(key: str) -> Any:
    """The default of setting `key`."""
    return BY_KEY[key].default


def from_env(key: str) -> Any:
    """Setting `key` from its environment variable, as the type of its default (or the default).

    For what gunicorn's master reads before any app exists (the apps read app.config).
    """
    raw = os.environ.get(BY_KEY[key].env)
    if raw is None:
        return default(key)
    kind = type(default(key))
    if kind is bool:
        return raw.strip().lower() in TRUE_WORDS
    return kind(raw)


def defaults() -> dict[str, Any]:
    """Every setting's default, by config key (SECRET_KEY left out: unset means generated)."""
    return {s.key: s.default for s in SETTINGS if s.default is not None}


def service_settings(config: Mapping[str, Any], root: Path | None = None) -> Any:
    """The model layer's ServiceSettings from `config` (missing keys take the table's default).

    A relative MODEL_PATH is taken from `root` (the app's folder).
    """
    from classifier.service import ServiceSettings  # only here: it imports torch

    def value(key: str) -> Any:
        raw = config.get(key, default(key))
        kind = type(default(key))
        if kind is bool:
            return raw if isinstance(raw, bool) else str(raw).strip().lower() in TRUE_WORDS
        return kind(raw)

    model_path = Path(value("MODEL_PATH"))
    if root is not None and not model_path.is_absolute():
        model_path = Path(root) / model_path
    fields = {
        field.name: value(field.name.upper())
        for field in dataclasses.fields(ServiceSettings)
        if field.name != "model_path"
    }
    return ServiceSettings(model_path=model_path, **fields)


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
