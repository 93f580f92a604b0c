"""The one prediction path that the page and the API share: bytes in, Prediction out."""

from __future__ import annotations

from classifier import Prediction

from .model import get_service
from .uploads import keep_upload


def predict_upload(data: bytes) -> Prediction:
    """Classify uploaded bytes (raises ImageError or NoModelError), keeping them if configured."""
    prediction = get_service().predict_bytes(data)
    keep_upload(data)
    return prediction
