"""Wire the ModelService into the app: built from config at start-up, one per worker process."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from classifier.service import ModelService

from . import metrics
from .settings import service_settings

EXTENSION = "seafront.model"


def init_app(app: Flask) -> None:
    """Load the model once for this app (the log says which file, classes, device and time)."""
    service = ModelService(
        service_settings(app.config, root=Path(app.root_path)), observer=metrics.observer(app)
    )
    service.start()
    app.extensions[EXTENSION] = service


def get_service() -> ModelService:
    """The current app's ModelService."""
    return current_app.extensions[EXTENSION]
