"""The model card, models/export.json beside export.pkl: what a model is, how it was trained,
how it scored, and the sha256 of the export it describes.

`train.py` writes it, the app checks the export against its sha256 before unpickling it, and
the /model page shows it. This module is the only one that knows the file's name and fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .atomic import write_atomically
from .regular import RefusedFileError, read_regular_file

CARD_SUFFIX = ".json"  # models/export.pkl -> models/export.json
CARD_MAX_BYTES = 1 << 20  # a card is a few kB; anything near this is not one


class CardError(ValueError):
    """The card exists but cannot be read or is not a JSON object; the message says why."""


@dataclass
class ModelCard:
    """The card's fields. Reading keeps only values of the right type, so a hand-edited card
    shows what it can instead of breaking the page."""

    name: str | None = None
    classes: list[str] = field(default_factory=list)
    architecture: str | None = None
    pretrained: bool | None = None
    image_size: int | None = None
    train_count: int | None = None
    valid_count: int | None = None
    error_rate: float | None = None
    accuracy: float | None = None
    per_class_accuracy: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, int] | None = None
    learning_rates: dict[str, Any] | None = None
    fastai_version: str | None = None
    torch_version: str | None = None
    created: str | None = None  # ISO-8601, UTC
    sha256: str | None = None  # of the export.pkl this card describes
    demo: bool | None = None
    data: str | None = None
    reports: dict[str, str] = field(default_factory=dict)
    # how the model was made, so that it can be made again (cards before these fields lack them)
    command: str | None = None  # the train.py command line as it was typed
    seed: int | None = None
    labels: str | None = None  # the --labels file, when there was one
    extra: list[str] = field(default_factory=list)  # --extra folders (training images only)
    augmentation: str | None = None  # in words, e.g. "none"
    image_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> n
    files_sha256: str | None = None  # fingerprint of the file list: split, label and path
    lr_find: dict[str, float] = field(default_factory=dict)  # lr-find's suggestions by name
    learning_rate_choice: str | None = None  # how learning_rates["frozen"] was chosen
    training_seconds: float | None = None  # from reading the images to writing the export
    versions: dict[str, str] = field(default_factory=dict)  # python, fastai, torch, ...
    processes: int | None = None  # that trained it together (accelerate launch); 1 alone
    precision: str | None = None  # of training: fp32, or bf16/fp16 mixed precision

    @property
    def created_at(self) -> datetime | None:
        """`created` as a datetime, or None when it is missing or not ISO-8601."""
        if not self.created:
            return None
        try:
            return datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """The card as the JSON object that is written."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelCard:
        """A card from a parsed JSON object; a field of the wrong type is left at its default."""
        values: dict[str, Any] = {}
        for name, kinds in _FIELD_TYPES.items():
            value = raw.get(name)
            if isinstance(value, bool) and bool not in kinds:
                continue  # JSON true is not a number here
            if isinstance(value, kinds):
                values[name] = value
        card = cls(**values)
        card.classes = [str(label) for label in card.classes]
        card.per_class_accuracy = {
            str(label): value
            for label, value in card.per_class_accuracy.items()
            if _is_number(value)
        }
        card.reports = {str(k): v for k, v in card.reports.items() if isinstance(v, str)}
        card.extra = [folder for folder in card.extra if isinstance(folder, str)]
        card.image_counts = {
            str(split): {str(label): n for label, n in counts.items() if _is_count(n)}
            for split, counts in card.image_counts.items()
            if isinstance(counts, dict)
        }
        card.lr_find = {str(k): v for k, v in card.lr_find.items() if _is_number(v)}
        card.versions = {str(k): v for k, v in card.versions.items() if isinstance(v, str)}
        if card.sha256:
            card.sha256 = card.sha256.strip().lower()
        return card


_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "classes": (list,),
    "architecture": (str,),
    "pretrained": (bool,),
    "image_size": (int,),
    "train_count": (int,),
    "valid_count": (int,),
    "error_rate": _NUMBER,
    "accuracy": _NUMBER,
    "per_class_accuracy": (dict,),
    "epochs": (dict,),
    "learning_rates": (dict,),
    "fastai_version": (str,),
    "torch_version": (str,),
    "created": (str,),
    "sha256": (str,),
    "demo": (bool,),
    "data": (str,),
    "reports": (dict,),
    "command": (str,),
    "seed": (int,),
    "labels": (str,),
    "extra": (list,),
    "augmentation": (str,),
    "image_counts": (dict,),
    "files_sha256": (str,),
    "lr_find": (dict,),
    "learning_rate_choice": (str,),
    "training_seconds": _NUMBER,
    "versions": (dict,),
    "processes": (int,),
    "precision": (str,),
}


def _is_number(value: object) -> bool:
    """A JSON number (true and false are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    """A whole JSON number of at least 0."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def card_path(model_path: Path) -> Path:
    """The model card beside a model file: models/export.pkl -> models/export.json."""
    return Path(model_path).with_suffix(CARD_SUFFIX)


def read_card(model_path: Path) -> ModelCard | None:
    """The card beside `model_path`, None when there is none; CardError when it is unreadable."""
    path = card_path(model_path)
    try:
        data, _ = read_regular_file(path, CARD_MAX_BYTES)
    except FileNotFoundError:
        return None
    except RefusedFileError as error:
        raise CardError(str(error)) from None
    except OSError as error:
        raise CardError(f"{path} could not be read ({error})") from None
    try:
        raw = json.loads(data.decode("utf-8"))
    except ValueError as error:
        raise CardError(f"{path} could not be read ({error})") from None
    if not isinstance(raw, dict):
        raise CardError(f"{path} is not a JSON object")
    return ModelCard.from_dict(raw)


def write_card(model_path: Path, card: ModelCard) -> Path:
    """Write `card` beside `model_path` in one step; returns the card's path."""
    path = card_path(model_path)
    return write_atomically(path, json.dumps(card.to_dict(), indent=2) + "\n")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file at `path`."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_of_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`, as the card records it."""
    return hashlib.sha256(data).hexdigest()


def utc_now() -> str:
    """The current time as ISO-8601 UTC, to the second, as the card records it."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()
