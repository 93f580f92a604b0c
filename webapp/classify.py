"""Classify a photo: the upload page (a form, post/redirect/get) and POST /api/predict (JSON).

Both go through `classify_upload`: decode, predict through the batcher, keep the upload if
configured. Errors are raised and answered by webapp/errors.py, except that the page without
JavaScript shows an upload's error beside the form it came from.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from PIL import Image

from classifier.errors import ImageError, NoModelError
from classifier.predictor import Prediction

from .errors import status_of
from .forms import UploadForm
from .result_store import remember, take_shown
from .results import THUMBNAIL_SIDE, blank_result, data_url, heat_map_url, make_result, shrunk
from .service import get_service
from .settings import TRUE_WORDS
from .uploads import keep_upload, read_image_bytes

bp = Blueprint("classify", __name__)
api = Blueprint("api", __name__)


def classify_upload(data: bytes) -> tuple[Prediction, Image.Image]:
    """Decode and classify uploaded bytes (ImageError, NoModelError), keeping them if configured.

    Returns the decoded image too, for the thumbnail and "why?".
    """
    service = get_service()
    image = service.decode(data)
    prediction = service.predict_image(image)
    keep_upload(data)
    return prediction, image


@bp.app_template_global()
def result_sentence(label: str, confidence: float) -> str:
    """The seed app's sentence, with the confidence in percent."""
    return f"That picture belongs to {label} ({confidence:.1%} confident)"


@bp.route("/upload", methods=["GET", "POST"])
@bp.route("/", methods=["GET", "POST"])  # the first rule registered is the one url_for builds
def index():
    """Show the form; on a valid POST classify the photo (post/redirect/get)."""
    form = UploadForm()
    status = 200
    if form.validate_on_submit():
        try:
            data = form.file.data.read()
            prediction, image = classify_upload(data)
        except (ImageError, NoModelError) as error:
            form.file.errors.append(str(error))
            status = status_of(error)
        else:
            flash(result_sentence(prediction.label, prediction.confidence), "success")
            remember(make_result(prediction, image, data))
            return redirect(url_for("classify.index"))
    elif form.errors:
        status = 400
    service = get_service()
    return render_template(
        "index.html",
        form=form,
        service=service,
        result=take_shown(),
        blank=blank_result(service.classes),
    ), status


@api.post("/api/predict")
def predict():
    """Classify the posted image: {label, confidence, probabilities, device}.

    `?thumbnail=1` adds "thumbnail" and `?explain=1` adds "heatmap" (Grad-CAM for the label,
    laid over the thumbnail): JPEG data: URLs.
    """
    prediction, image = classify_upload(read_image_bytes())
    answer = prediction.as_dict()
    if _flag("thumbnail"):
        answer["thumbnail"] = data_url(shrunk(image, THUMBNAIL_SIDE))
    if _flag("explain"):
        answer["heatmap"] = heat_map_url(image, prediction.label)
    return jsonify(answer)


def _flag(name: str) -> bool:
    """True when the query string turns `name` on (1, true, yes or on)."""
    return request.args.get(name, "").strip().lower() in TRUE_WORDS
