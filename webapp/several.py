"""Several photos in one request (the page's file field, the API's repeated `files` field).

Each photo is decoded alone and gets its own error if it has one; the decoded ones are then
predicted in one submission to the batcher, so that they share forward passes. At most
MAX_FILES photos per request, all within MAX_CONTENT_LENGTH.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from PIL import Image

from classifier.errors import ImageError
from classifier.predictor import Prediction

from .errors import TooManyFilesError
from .results import PHOTO_SIDE, Result, error_result, make_result, shrunk
from .service import get_service
from .uploads import keep_upload


@dataclass
class Outcome:
    """One photo of several: its bytes, and its decoded image and prediction, or its error."""

    data: bytes
    image: Image.Image | None = None
    prediction: Prediction | None = None
    error: ImageError | None = None


def check_count(count: int) -> None:
    """Refuse more photos than MAX_FILES, saying how many were sent and how many may be."""
    limit = int(current_app.config["MAX_FILES"])
    if count > limit:
        raise TooManyFilesError(
            f"{count} photos were sent, and at most {limit} can be classified at once: send "
            "the rest in another go."
        )


def caption(position: int, count: int) -> str:
    """How the page names a photo of several: "Photo 2 of 3"."""
    return f"Photo {position} of {count}"


def classify_several(uploads: list[bytes], at_least: int | None = None) -> list[Outcome]:
    """Decode each upload (at least `at_least` px where the photo is), then predict the readable
    ones together; one Outcome per upload, in order. A missing model or a deadline fails them
    all (NoModelError, DeadlineExceeded)."""
    check_count(len(uploads))
    service = get_service()
    outcomes = []
    for data in uploads:
        try:
            outcomes.append(Outcome(data, image=_held(service.decode(data, at_least=at_least))))
        except ImageError as error:
            outcomes.append(Outcome(data, error=error))
    readable = [outcome for outcome in outcomes if outcome.image is not None]
    if readable:
        images = [outcome.image for outcome in readable if outcome.image is not None]
        for outcome, prediction in zip(readable, service.predict_images(images), strict=True):
            outcome.prediction = prediction
            keep_upload(outcome.data)
    return outcomes


def _held(image: Image.Image) -> Image.Image:
    """`image`, made no larger than the model and the page need while the others are decoded.

    One decoded 50-megapixel PNG holds 150 MB; ten of them would hold 1.5 GB. The model needs
    no more than its draft size (what a draft JPEG decode keeps for it), the page PHOTO_SIDE.
    """
    classifier = get_service().classifier
    if classifier is None or classifier.draft_size is None:
        return image  # a model without a Resize takes the photo at its own size
    # the shorter side keeps the draft size, as a draft decode does; the longer one PHOTO_SIDE
    scale = max(classifier.draft_size / min(image.size), PHOTO_SIDE / max(image.size))
    if scale >= 1:
        return image
    return shrunk(image, round(max(image.size) * scale))


def page_results(outcomes: list[Outcome]) -> list[Result]:
    """The page's cards for several photos, in order: a result, or the photo's error."""
    count = len(outcomes)
    return [
        make_result(outcome.prediction, outcome.image, outcome.data, caption(position, count))
        if outcome.prediction is not None and outcome.image is not None
        else error_result(str(outcome.error), caption(position, count))
        for position, outcome in enumerate(outcomes, start=1)
    ]
