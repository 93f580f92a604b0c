"""The one prediction path that the page and the API share: bytes in, Prediction out."""

from __future__ import annotations

from PIL import Image

from classifier import Prediction

from .model import get_service
from .uploads import keep_upload


def predict_upload(data: bytes) -> Prediction:
    """Classify uploaded bytes (raises ImageError or NoModelError), keeping them if configured."""
    return predict_upload_image(data)[0]


def predict_upload_image(data: bytes) -> tuple[Prediction, Image.Image]:
    """predict_upload that also returns the decoded image (for the thumbnail and "why?")."""
    service = get_service()
    image = service.decode(data)
    prediction = service.predict_image(image)
    keep_upload(data)
    return prediction, image
