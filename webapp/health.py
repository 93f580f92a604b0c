"""GET /healthz: the process is up, and what it serves."""

from __future__ import annotations

from flask import Blueprint, jsonify

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
