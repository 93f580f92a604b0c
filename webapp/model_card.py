"""/model: the loaded model's card (models/export.json beside export.pkl) and its confusion
matrix.

The classes always come from the loaded model; the card adds what training recorded. The card
shown is the one the service judged when it loaded the model (classifier/integrity.py): a card
that describes another file is stale, left out, and the page says why. Without a card, or without
the reports, the page says so and shows what it can.
"""

from __future__ import annotations

import io
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_file

from formats.modelcard import ModelCard, card_path
from formats.regular import RefusedFileError, read_regular_file

from .service import get_service

bp = Blueprint("model_card", __name__)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MATRIX_MAX_BYTES = 20 << 20  # matplotlib's PNG is tens of kB


def confusion_matrix_png(card: ModelCard | None, model_path: Path) -> bytes | None:
    """The card's confusion matrix PNG when it is there, else None.

    The card names it relative to the folder train.py ran in (`reports/confusion_matrix.png`),
    which is normally the model folder's parent; the model folder and the app's folder are
    tried next. Only this one file, named by the local card, is ever served.
    """
    if card is None or "confusion_matrix" not in card.reports:
        return None
    named = Path(card.reports["confusion_matrix"])
    model_folder = Path(model_path).resolve().parent
    candidates = (
        [named]
        if named.is_absolute()
        else [
            model_folder.parent / named,
            model_folder / named,
            Path(current_app.root_path) / named,
        ]
    )
    for candidate in candidates:
        try:
            data, _ = read_regular_file(candidate, MATRIX_MAX_BYTES)  # never a FIFO or a device
        except (OSError, RefusedFileError):
            continue
        if data.startswith(PNG_SIGNATURE):
            return data
    return None


@bp.get("/model")
def page():
    """The model card page."""
    service = get_service()
    card = service.card
    # a card without a sha256 cannot be checked against the file; other classes give it away
    stale = bool(card and card.classes and card.classes != service.classes)
    return render_template(
        "model.html",
        service=service,
        card=card,
        stale=stale,
        card_name=card_path(service.path).name,
        has_matrix=confusion_matrix_png(card, service.path) is not None,
    )


@bp.get("/model/confusion-matrix.png")
def confusion_matrix():
    """The confusion matrix PNG that the model card names; 404 when there is none."""
    service = get_service()
    data = confusion_matrix_png(service.card, service.path)
    if data is None:
        abort(404)
    return send_file(io.BytesIO(data), mimetype="image/png", max_age=60)
