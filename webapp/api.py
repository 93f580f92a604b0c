"""The JSON API: POST /api/predict and GET /healthz."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from classifier import ImageError, NoModelError
from classifier.explain import ExplainError

from .model import get_service
from .predict import predict_upload
from .results import answer_with_pictures
from .uploads import read_image_bytes

bp = Blueprint("api", __name__)


@bp.post("/api/predict")
def predict():
    """Classify the posted image: {label, confidence, probabilities, device}.

    `?thumbnail=1` adds "thumbnail" and `?explain=1` adds "heatmap" (Grad-CAM for the label,
    laid over the thumbnail): JPEG data: URLs.
    """
    thumbnail, explain = _flag("thumbnail"), _flag("explain")
    if thumbnail or explain:
        return jsonify(answer_with_pictures(read_image_bytes(), thumbnail, explain))
    return jsonify(predict_upload(read_image_bytes()).as_dict())


def _flag(name: str) -> bool:
    """True when the query string turns `name` on (1, true, yes or on)."""
    return request.args.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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


@bp.errorhandler(ExplainError)
def cannot_explain(error: ExplainError):
    """501 when the model has no convolutional layer to explain."""
    return jsonify(error=str(error)), 501


@bp.errorhandler(NoModelError)
def no_model(error: NoModelError):
    """503 until a model is installed."""
    return jsonify(error=str(error)), 503
