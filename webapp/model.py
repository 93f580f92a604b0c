"""Wire the ModelService into the app: built from config at start-up, one per worker process."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from classifier import ModelService, ServiceSettings

EXTENSION = "seafront.model"


def settings_from_config(app: Flask) -> ServiceSettings:
    """ServiceSettings from the app's config; relative paths are taken from the app's folder."""
    config = app.config
    model_path = Path(config["MODEL_PATH"])
    if not model_path.is_absolute():
        model_path = Path(app.root_path) / model_path
    return ServiceSettings(
        model_path=model_path, device=str(config["DEVICE"]),
        max_batch_size=int(config["MAX_BATCH_SIZE"]), max_wait_ms=float(config["MAX_WAIT_MS"]),
        draft=bool(config["DRAFT_DECODE"]), max_pixels=int(config["MAX_PIXELS"]),
        torch_threads=int(config["TORCH_THREADS"]), workers=int(config["WORKERS"]),
        reload_interval_s=float(config["MODEL_RELOAD_INTERVAL"]),
        precision=str(config["PRECISION"]))


def init_app(app: Flask) -> None:
    """Load the model once for this app (the log says which file, classes, device and time)."""
    service = ModelService(settings_from_config(app))
    service.start()
    app.extensions[EXTENSION] = service


def get_service() -> ModelService:
    """The current app's ModelService."""
    return current_app.extensions[EXTENSION]
