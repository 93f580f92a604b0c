"""Read the model file once, safely, and judge it against its model card (export.json).

The rule for a card whose sha256 differs from the file (README, "Replacing the model"): train.py
writes the card after the export, so a card that belongs to a file is never older than it.

- A card *older* than the model file was written for an earlier file: the file was replaced
  (`cp other/export.pkl models/export.pkl`, as the README says). The card is stale: the file is
  served without it, and the log and /model say so.
- A card as new as the file or newer was written for this file, so the file was changed or only
  partly copied after training: it is refused, at start-up and on a reload alike.

A sha256 that matches is always accepted, whatever the times say.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from formats.modelcard import CardError, ModelCard, card_path, read_card, sha256_of_bytes
from formats.regular import FileTooLargeError, RefusedFileError, read_regular_file

from .errors import ModelLoadError

MAX_BYTES_SETTING = "SEAFRONT_MODEL_MAX_BYTES"


@dataclass(frozen=True)
class CardCheck:
    """What the card beside the model file says about the bytes that were read."""

    card: ModelCard | None = None  # the card of these bytes; None without one or when left out
    problem: str | None = None  # why the card beside the file is left out (stale, unreadable)


@dataclass(frozen=True)
class CheckedModel:
    """The model file's bytes, read once, and the verdict on its card."""

    data: bytes
    card: CardCheck


def read_checked(model_path: Path, max_bytes: int) -> CheckedModel:
    """The model file's bytes, read once without blocking, and its card's verdict.

    ModelLoadError when the path is not a regular file (a FIFO, a device, a socket, a dangling
    link), is over `max_bytes`, cannot be read, or does not match a card that belongs to it.
    Loading from these same bytes (not from the path again) means the file that was checked is
    the file that is unpickled, even if someone replaces it in between.
    """
    model_path = Path(model_path)
    card, card_problem, card_mtime = _read_card(model_path)
    data, opened = _read_model(model_path, max_bytes)
    actual = sha256_of_bytes(data)
    if card is None or not card.sha256 or card.sha256 == actual:
        return CheckedModel(data, CardCheck(card, card_problem))
    card_file = card_path(model_path)
    if card_mtime is not None and opened.st_mtime_ns > card_mtime:
        return CheckedModel(
            data,
            CardCheck(
                None,
                f"The model card {card_file} describes another file: it records sha256 "
                f"{card.sha256[:16]}..., {model_path} is {actual[:16]}..., and the card is older "
                f"than the file, so it was written for the model this file replaced. It is not "
                f"shown as this model's card. Copy the {card_file.name} that was written with "
                f"this {model_path.name} beside it, or delete the old one.",
            ),
        )
    raise ModelLoadError(
        f"{model_path} does not match the sha256 recorded in {card_file} (the card says "
        f"{card.sha256[:16]}..., the file is {actual[:16]}...), and the card is not older than "
        f"the file, so it was written for this file: the file was changed or only partly "
        f"copied after training. Copy the {model_path.name} that belongs to {card_file.name} "
        f"again, or if you meant to serve another model, copy its {card_file.name} too (or "
        f"delete the old card)."
    )


def _read_card(model_path: Path) -> tuple[ModelCard | None, str | None, int | None]:
    """The card beside the model, why it is left out (unreadable), and its mtime in ns.

    A card that cannot be read or parsed records nothing, so it cannot refuse the model.
    """
    try:
        card = read_card(model_path)
    except CardError as error:
        return (
            None,
            f"{error}, so {model_path} is not checked against its sha256: restore the model "
            f"card that train.py wrote, or delete it.",
            None,
        )
    if card is None:
        return None, None, None
    try:
        mtime: int | None = os.stat(card_path(model_path)).st_mtime_ns
    except OSError:
        mtime = None  # gone since it was read: no time to compare, so a mismatch is refused
    return card, None, mtime


def _read_model(model_path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The model file's bytes and fstat, or ModelLoadError with a sentence."""
    try:
        return read_regular_file(model_path, max_bytes)
    except FileTooLargeError as error:
        raise ModelLoadError(
            f"{error}, so it is not read: an image classifier's export is rarely that large. If "
            f"it really is yours, set {MAX_BYTES_SETTING} to at least {error.size} and restart "
            f"the app."
        ) from None
    except RefusedFileError as error:
        raise ModelLoadError(
            f"{error}, so it is not read: put the export.pkl that fastai's learn.export() "
            f"wrote there (a regular file, or a link to one)."
        ) from None
    except OSError as error:
        raise ModelLoadError(
            f"{model_path} could not be read ({error}): check that it exists "
            f"and that this user may read it."
        ) from None


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
    """(inode, size, mtime in ns) of the file, or of a dangling link itself; None when absent.

    A link to nothing is a state of its own, so that it is judged (and logged) once, not
    mistaken for a missing file; a FIFO or a device is stat'ed, never opened.
    """
    for look in (os.stat, os.lstat):
        try:
            info = look(path)
        except OSError:
            continue
        return (info.st_ino, info.st_size, info.st_mtime_ns)
    return None
