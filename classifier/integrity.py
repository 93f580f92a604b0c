"""Read a model file once and check it against the sha256 its model card (export.json) records."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from formats.modelcard import CardError, card_path, read_card, sha256_of_bytes

from .errors import ModelLoadError

log = logging.getLogger(__name__)


def recorded_sha256(model_path: Path) -> str | None:
    """The sha256 the model card records, or None without a card, a readable card or the field.

    A card that cannot be read or parsed records nothing, so it cannot refuse the model; the log
    says the file goes unchecked.
    """
    try:
        card = read_card(model_path)
    except CardError as error:
        log.warning(
            "%s, so %s is not checked against its sha256: restore the model card that "
            "train.py wrote, or delete it.",
            error,
            model_path,
        )
        return None
    return card.sha256 if card else None


def read_verified(model_path: Path) -> bytes:
    """The model file's bytes, read once; ModelLoadError if they differ from the card's sha256.

    Loading from these same bytes (not from the path again) means the file that was checked is
    the file that is unpickled, even if someone replaces it in between.
    """
    model_path = Path(model_path)
    expected = recorded_sha256(model_path)
    try:
        data = model_path.read_bytes()
    except OSError as error:
        raise ModelLoadError(
            f"{model_path} could not be read ({error}): check that it exists "
            f"and that this user may read it."
        ) from None
    actual = sha256_of_bytes(data)
    if expected is not None and actual != expected:
        card = card_path(model_path)
        raise ModelLoadError(
            f"{model_path} does not match the sha256 recorded in {card} (the card says "
            f"{expected[:16]}..., the file is {actual[:16]}...): the file was changed or only "
            f"partly copied after training. Copy the export.pkl that belongs to {card.name}, "
            f"or if you replaced the model on purpose, copy its {card.name} too (or delete the "
            f"old card)."
        )
    return data


@dataclass(frozen=True)
class FileState:
    """What os.stat says about the model file and its card: changes when either is replaced."""

    model: tuple[int, int, int] | None
    card: tuple[int, int, int] | None

    @classmethod
    def of(cls, model_path: Path) -> FileState:
        """The current state of `model_path` and its card (None for a missing file)."""
        return cls(_stat(Path(model_path)), _stat(card_path(model_path)))


def _stat(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime in ns), or None when the file does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
