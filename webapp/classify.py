"""Classify photos: the upload page (a form, post/redirect/get) and POST /api/predict (JSON).

One photo goes through `classify_upload`: decode, predict through the batcher, keep the upload
if configured; several (the page's field, POST /api/predict/several) go through
webapp/several.py, which predicts them together. Errors are
raised and answered by webapp/errors.py, except that the page without JavaScript shows an
upload's error beside the form it came from.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from PIL import Image

from classifier.errors import ExplainError, ImageError, NoModelError
from classifier.predictor import Prediction

from .errors import RequestError, status_of
from .examples import page_examples
from .forms import UploadForm
from .result_store import remember, take_shown
from .results import (
    PHOTO_SIDE,
    THUMBNAIL_SIDE,
    Result,
    blank_result,
    data_url,
    heat_map_url,
    make_result,
    shrunk,
)
from .service import get_service
from .settings import TRUE_WORDS
from .several import classify_several, page_results
from .uploads import keep_upload, read_image_bytes, read_image_list
from .wording import is_sure

bp = Blueprint("classify", __name__)
api = Blueprint("api", __name__)


def classify_upload(data: bytes, at_least: int | None = None) -> tuple[Prediction, Image.Image]:
    """Decode and classify uploaded bytes (ImageError, NoModelError), keeping them if configured.

    Returns the decoded image too, at least `at_least` px where the photo is (for the
    thumbnail and "why?"; the model's own input may be far smaller).
    """
    service = get_service()
    image = service.decode(data, at_least=at_least)
    prediction = service.predict_image(image)
    keep_upload(data)
    return prediction, image


def classify_for_page(uploads: list[bytes]) -> list[Result]:
    """The page's cards for the photos sent. One photo's error is raised (shown by the field);
    of several, each gets its own card, and only when none could be read is an error raised."""
    if len(uploads) == 1:
        # decoded once, large enough for the photo kept for "why?" and its thumbnail
        prediction, image = classify_upload(uploads[0], at_least=PHOTO_SIDE)
        return [make_result(prediction, image, uploads[0])]
    outcomes = classify_several(uploads, at_least=THUMBNAIL_SIDE)
    results = page_results(outcomes)
    errors = [outcome.error for outcome in outcomes if outcome.error]
    if len(errors) == len(outcomes):
        # every photo's sentence beside the field, with the first one's kind (and status)
        raise type(errors[0])(" ".join(result.flashed for result in results)) from errors[0]
    return results


@bp.route("/upload", methods=["GET", "POST"])
@bp.route("/", methods=["GET", "POST"])  # the first rule registered is the one url_for builds
def index():
    """Show the form; on a valid POST classify the photos (post/redirect/get)."""
    form = UploadForm()
    status = 200
    if form.validate_on_submit():
        try:
            results = classify_for_page([upload.read() for upload in form.photos()])
        except (ImageError, NoModelError, RequestError) as error:
            form.file.errors.append(str(error))
            status = status_of(error)
        else:
            show(results)
            return redirect(url_for("classify.index"))
    elif form.errors:
        status = 400
    return render_page(form), status


def show(results: list[Result]) -> None:
    """Show `results` on the next page view; each sentence is flashed too, for a page view that
    another worker (without the results in its memory) answers."""
    for result in results:
        flash(result.flashed, "warning" if result.error or not result.sure else "success")
    remember(results)


def render_page(form: UploadForm) -> str:
    """The upload page, with the results to show (if any) and the examples (if any)."""
    service = get_service()
    return render_template(
        "index.html",
        form=form,
        service=service,
        results=take_shown(),
        blank=blank_result(service.classes),
        examples=page_examples(),
    )


@api.post("/api/predict")
def predict():
    """Classify the posted image: {label, confidence, probabilities, sure, device}.

    `?thumbnail=1` adds "thumbnail" and `?explain=1` adds "heatmap" (Grad-CAM for the label,
    laid over the thumbnail): JPEG data: URLs.
    """
    prediction, image = classify_upload(read_image_bytes(), at_least=_picture_side())
    return jsonify(_answer(prediction, image))


@api.post("/api/predict/several")
def predict_several():
    """Classify the images of the `files` parts together: {"results": [...]}, in the order sent,
    each an answer as /api/predict gives it or that image's {"error", "status"}."""
    uploads = read_image_list()
    why_not = get_service().why_not_explainable
    if _flag("explain") and why_not:
        raise ExplainError(why_not)  # before any work is done
    answers = []
    for outcome in classify_several(uploads, at_least=_picture_side()):
        if outcome.prediction is not None and outcome.image is not None:
            answers.append(_answer(outcome.prediction, outcome.image))
        elif outcome.error is not None:
            answers.append({"error": str(outcome.error), "status": status_of(outcome.error)})
    return jsonify(results=answers)


def _answer(prediction: Prediction, image: Image.Image) -> dict:
    """The API's answer for one photo, with what the query string asks for."""
    answer = {**prediction.as_dict(), "sure": is_sure(prediction.confidence)}
    if _flag("thumbnail"):
        answer["thumbnail"] = data_url(shrunk(image, THUMBNAIL_SIDE))
    if _flag("explain"):
        answer["heatmap"] = heat_map_url(image, prediction.label)
    return answer


def _picture_side() -> int | None:
    """The size an API upload is decoded at: the thumbnail's, when the answer shows the photo
    (`?thumbnail=1`, `?explain=1`); otherwise the model's own."""
    return THUMBNAIL_SIDE if _flag("thumbnail") or _flag("explain") else None


def _flag(name: str) -> bool:
    """True when the query string turns `name` on (1, true, yes or on)."""
    return request.args.get(name, "").strip().lower() in TRUE_WORDS
