"""GET /healthz (liveness: the process is up, and what it serves) and GET /readyz (readiness:
send it traffic: the model is loaded and warmed up, and the worker is not draining)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from . import drain
from .service import get_service

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness and what is loaded."""
    service = get_service()
    return jsonify(
        status="ok",
        model_loaded=service.loaded,
        device=str(service.device),
        classes=service.classes,
    )


@bp.get("/readyz")
def readyz():
    """200 when this worker should get requests; 503 and the reason while it should not."""
    if drain.DRAINING.is_set():
        return jsonify(ready=False, reason="draining: the server is shutting down"), 503
    if not get_service().loaded:  # start() loads and warms up before the app answers at all
        return jsonify(ready=False, reason="no model is loaded"), 503
    return jsonify(ready=True)
