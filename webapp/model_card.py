"""/model: the model card (models/export.json beside export.pkl) and its confusion matrix.

The classes always come from the loaded model; the card adds what training recorded. Without a
card, or without the reports, the page says so and shows what it can.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_file

from formats.modelcard import CardError, ModelCard, card_path, read_card

from .service import get_service

log = logging.getLogger(__name__)
bp = Blueprint("model_card", __name__)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _card(model_path: Path) -> ModelCard | None:
    """The card beside the model, or None (an unreadable card is logged and left out)."""
    try:
        return read_card(model_path)
    except CardError as error:
        log.warning("Ignoring the model card: %s", error)
        return None


def confusion_matrix_file(card: ModelCard | None, model_path: Path) -> Path | None:
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
            with candidate.open("rb") as file:
                if file.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE:
                    return candidate
        except OSError:
            continue
    return None


@bp.get("/model")
def page():
    """The model card page."""
    service = get_service()
    card = _card(service.path)
    stale = bool(card and card.classes and service.loaded and card.classes != service.classes)
    return render_template(
        "model.html",
        service=service,
        card=card,
        stale=stale,
        card_name=card_path(service.path).name,
        has_matrix=confusion_matrix_file(card, service.path) is not None,
    )


@bp.get("/model/confusion-matrix.png")
def confusion_matrix():
    """The confusion matrix PNG that the model card names; 404 when there is none."""
    service = get_service()
    path = confusion_matrix_file(_card(service.path), service.path)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/png", max_age=60)
