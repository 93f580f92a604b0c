"""The result's buttons: "why?" (the page without JavaScript) and "Wrong? It is a ..." (both).

The page's script sends the photo again with each click; the plain forms send the id of the
result kept in memory (webapp/result_store.py) instead. Both are CSRF-protected POSTs.
"""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from classifier import ImageError, NoModelError
from classifier.explain import ExplainError

from .feedback import FeedbackLabelError, save_feedback
from .model import get_service
from .result_store import recall, show_next
from .results import heat_map_url, open_photo, photo_to_keep

log = logging.getLogger(__name__)
bp = Blueprint("results", __name__)

GONE = ("That photo is no longer kept in memory (results are kept for a few minutes): "
        "upload it again, then press the button.")


def _wants_json() -> bool:
    """The page's script asks for JSON; a plain form post wants a page."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _refuse(sentence: str, status: int) -> Response:
    """An error as JSON for the script, or as a flashed message on the page."""
    if _wants_json():
        return jsonify(error=sentence), status
    flash(sentence, "danger")
    return redirect(url_for("pages.index"))


@bp.post("/why")
def why():
    """Lay the heat map over the kept photo and show the result again (no JavaScript)."""
    result = recall(request.form.get("result"))
    if result is None:
        flash(GONE, "warning")
        return redirect(url_for("pages.index"))
    try:
        result.heatmap = heat_map_url(open_photo(result), result.label)
    except (ExplainError, NoModelError) as error:
        flash(str(error), "warning")
    show_next(result)
    return redirect(url_for("pages.index", _anchor="why"))


@bp.post("/feedback")
def feedback():
    """Keep the photo under uploads/feedback/<label>/ when the user says what it really is."""
    if not current_app.config["FEEDBACK"]:
        abort(404)
    service = get_service()
    label = request.form.get("label", "")
    if label not in service.classes:
        return _refuse(f"{label!r} is not one of the model's classes "
                       f"({', '.join(service.classes) or 'none loaded'}): pick one of the "
                       "buttons.", 400)
    upload = request.files.get("file")
    result = None
    try:
        if upload is not None:
            image = photo_to_keep(upload.read())
        else:
            result = recall(request.form.get("result"))
            if result is None:
                return _refuse(GONE, 410)
            image = open_photo(result)
        path = save_feedback(image, label)
    except (ImageError, FeedbackLabelError) as error:
        return _refuse(str(error), getattr(error, "status", 400))
    except NoModelError as error:
        return _refuse(str(error), 503)
    log.info("Feedback: kept a photo of %s as %s", label, path.name)
    sentence = f"Thank you: the photo is kept as an example of {label} for the next training."
    if _wants_json():
        return jsonify(saved=True, label=label, message=sentence)
    flash(sentence, "success")
    if result is not None:
        result.feedback = label
        show_next(result)
    return redirect(url_for("pages.index"))
