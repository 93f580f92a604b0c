"""/model: the model card (models/export.json beside export.pkl) and its confusion matrix.

The classes always come from the loaded model; the card adds what training recorded. Without a
card, or without the reports, the page says so and shows what it can.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, render_template, send_file

from .model import get_service

log = logging.getLogger(__name__)
bp = Blueprint("card", __name__)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class ModelCard:
    """The fields of export.json that the page shows; a field of the wrong type is left out."""

    path: Path
    facts: dict[str, Any] = field(default_factory=dict)
    per_class_accuracy: dict[str, float] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)


def card_path(model_path: Path) -> Path:
    """The card beside the model: models/export.pkl -> models/export.json."""
    return Path(model_path).with_suffix(".json")


def _typed(raw: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    """raw[key] when it has the expected type, else None (bool is not a number here)."""
    value = raw.get(key)
    if isinstance(value, bool) and kind is not bool:
        return None
    return value if isinstance(value, kind) else None


def _created(value: Any) -> datetime | None:
    """The card's ISO-8601 creation time, or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def read_card(model_path: Path) -> ModelCard | None:
    """The model card beside `model_path`, or None when there is none or it is not JSON."""
    path = card_path(model_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("Ignoring the model card %s: %s", path, error)
        return None
    if not isinstance(raw, dict):
        log.warning("Ignoring the model card %s: it is not a JSON object", path)
        return None
    number = (int, float)
    facts = {
        "name": _typed(raw, "name", str),
        "architecture": _typed(raw, "architecture", str),
        "pretrained": _typed(raw, "pretrained", bool),
        "image_size": _typed(raw, "image_size", int),
        "train_count": _typed(raw, "train_count", int),
        "valid_count": _typed(raw, "valid_count", int),
        "error_rate": _typed(raw, "error_rate", number),
        "accuracy": _typed(raw, "accuracy", number),
        "epochs": _typed(raw, "epochs", dict),
        "learning_rates": _typed(raw, "learning_rates", dict),
        "fastai_version": _typed(raw, "fastai_version", str),
        "torch_version": _typed(raw, "torch_version", str),
        "created": _created(raw.get("created")),
        "demo": _typed(raw, "demo", bool),
        "data": _typed(raw, "data", str),
    }
    per_class = _typed(raw, "per_class_accuracy", dict) or {}
    classes = _typed(raw, "classes", list) or []
    reports = _typed(raw, "reports", dict) or {}
    return ModelCard(
        path=path, facts=facts,
        per_class_accuracy={str(k): v for k, v in per_class.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)},
        classes=[str(label) for label in classes],
        reports={str(k): v for k, v in reports.items() if isinstance(v, str)})


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
    candidates = [named] if named.is_absolute() else [
        model_folder.parent / named, model_folder / named, Path(current_app.root_path) / named]
    for candidate in candidates:
        try:
            with candidate.open("rb") as file:
                if file.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE:
                    return candidate
        except OSError:
            continue
    return None


@bp.get("/model")
def model_card():
    """The model card page."""
    service = get_service()
    card = read_card(service.path)
    stale = bool(card and card.classes and service.loaded and card.classes != service.classes)
    return render_template("model.html", service=service, card=card, stale=stale,
                           has_matrix=confusion_matrix_file(card, service.path) is not None)


@bp.get("/model/confusion-matrix.png")
def confusion_matrix():
    """The confusion matrix PNG that the model card names; 404 when there is none."""
    service = get_service()
    path = confusion_matrix_file(read_card(service.path), service.path)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/png", max_age=60)
