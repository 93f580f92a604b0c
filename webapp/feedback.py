"""POST /feedback: "Wrong? It is a ..." keeps the photo as `uploads/feedback/<label>/<uuid>.jpg`
(SEAFRONT_FEEDBACK_FOLDER, inside SEAFRONT_UPLOAD_FOLDER unless it is an absolute path).

The page's script sends the photo again; the plain form sends the id of the result kept in
memory instead. `python train.py fit --extra uploads/feedback` takes these class folders in as
extra data. The photos are written and capped by the same `save_capped` as kept uploads, with
one cap (FEEDBACK_MAX_FILES, FEEDBACK_MAX_BYTES) across all the class folders.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, request, url_for
from PIL import Image

from classifier.errors import ImageError, NoModelError

from .errors import RequestError, StoreUnavailableError, error_response, status_of, wants_json
from .result_store import GONE, recall, show_next
from .results import PHOTO_SIDE, jpeg_bytes, open_photo, photo_to_keep, shrunk
from .service import get_service
from .uploads import save_capped

log = logging.getLogger(__name__)
bp = Blueprint("feedback", __name__)


class FeedbackLabelError(RequestError):
    """The label cannot name a folder (the model's classes normally can)."""


def feedback_root() -> Path:
    """The folder that holds one subfolder per class: <UPLOAD_FOLDER>/<FEEDBACK_FOLDER>."""
    config = current_app.config
    return Path(current_app.root_path) / config["UPLOAD_FOLDER"] / config["FEEDBACK_FOLDER"]


def _class_folder(root: Path, label: str) -> Path:
    """`root/label`, refusing labels that are not a plain folder name."""
    if label in ("", ".", "..") or any(character in label for character in "/\\\0"):
        raise FeedbackLabelError(
            f"The class {label!r} cannot be used as a folder name, so "
            "feedback for it cannot be saved."
        )
    return root / label


def save_feedback(image: Image.Image, label: str) -> Path:
    """Save `image` as a JPEG (no metadata) with a generated name under the class's folder."""
    root = feedback_root()
    photo = jpeg_bytes(shrunk(image, PHOTO_SIDE), quality=90)
    config = current_app.config
    return save_capped(
        _class_folder(root, label),
        photo,
        "jpg",
        max_files=int(config["FEEDBACK_MAX_FILES"]),
        max_bytes=int(config["FEEDBACK_MAX_BYTES"]),
        cap_root=root,
    )


def _refuse(sentence: str, status: int):
    """An error as JSON for the script, or as a flashed message on the page without it."""
    if wants_json():
        return error_response(sentence, status)
    flash(sentence, "danger")
    return redirect(url_for("classify.index"))


@bp.post("/feedback")
def feedback():
    """Keep the photo under uploads/feedback/<label>/ when the user says what it really is."""
    if not current_app.config["FEEDBACK"]:
        abort(404)
    service = get_service()
    label = request.form.get("label", "")
    if label not in service.classes:
        return _refuse(
            f"{label!r} is not one of the model's classes "
            f"({', '.join(service.classes) or 'none loaded'}): pick one of the "
            "buttons.",
            400,
        )
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
    except (ImageError, RequestError, NoModelError, StoreUnavailableError) as error:
        return _refuse(str(error), status_of(error))
    log.info("Feedback: kept a photo of %s as %s", label, path.name)
    sentence = f"Thank you: the photo is kept as an example of {label} for the next training."
    if wants_json():
        return jsonify(saved=True, label=label, message=sentence)
    flash(sentence, "success")
    if result is not None:
        result.feedback = label
        show_next(result)
    return redirect(url_for("classify.index"))
