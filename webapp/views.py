"""The upload page: GET shows the form, POST predicts, flashes the answer and redirects back."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from classifier import ImageError, NoModelError

from .forms import UploadForm
from .model import get_service
from .predict import predict_upload_image
from .result_store import remember, take_shown
from .results import blank_result, make_result

bp = Blueprint("pages", __name__)


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
            prediction, image = predict_upload_image(data)
        except (ImageError, NoModelError) as error:
            form.file.errors.append(str(error))
            status = getattr(error, "status", 503)
        else:
            flash(result_sentence(prediction.label, prediction.confidence), "success")
            remember(make_result(prediction, image, data))
            return redirect(url_for("pages.index"))
    elif form.errors:
        status = 400
    service = get_service()
    return render_template("index.html", form=form, service=service, result=take_shown(),
                           blank=blank_result(service.classes)), status
