"""The JSON API: POST /api/predict and GET /healthz."""

from __future__ import annotations

from flask import Blueprint, jsonify

from classifier import ImageError, NoModelError

from .model import get_service
from .predict import predict_upload
from .uploads import read_image_bytes

bp = Blueprint("api", __name__)


@bp.post("/api/predict")
def predict():
    """Classify the posted image: {label, confidence, probabilities, device}."""
    return jsonify(predict_upload(read_image_bytes()).as_dict())


@bp.get("/healthz")
def healthz():
    """Liveness and what is loaded."""
    service = get_service()
    return jsonify(status="ok", model_loaded=service.loaded, device=str(service.device),
                   classes=service.classes)


@bp.errorhandler(ImageError)
def bad_image(error: ImageError):
    """400, 413 or 415 with the sentence that says what to do."""
    return jsonify(error=str(error)), error.status


@bp.errorhandler(NoModelError)
def no_model(error: NoModelError):
    """503 until a model is installed."""
    return jsonify(error=str(error)), 503
