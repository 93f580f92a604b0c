"""Save a photo the user says the model got wrong as `uploads/feedback/<label>/<uuid>.jpg`.

`python train.py fit --extra uploads/feedback` takes these class folders in as extra data.
The photos are written and capped by the same `save_capped` as kept uploads, with one cap
(FEEDBACK_MAX_FILES, FEEDBACK_MAX_BYTES) across all the class folders.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from PIL import Image

from .results import PHOTO_SIDE, jpeg_bytes, shrunk
from .uploads import save_capped

FEEDBACK_FOLDER = "feedback"


class FeedbackLabelError(ValueError):
    """The label cannot name a folder (the model's classes normally can)."""


def feedback_root() -> Path:
    """The folder that holds one subfolder per class: <UPLOAD_FOLDER>/feedback."""
    return Path(current_app.root_path) / current_app.config["UPLOAD_FOLDER"] / FEEDBACK_FOLDER


def _class_folder(root: Path, label: str) -> Path:
    """`root/label`, refusing labels that are not a plain folder name."""
    if label in ("", ".", "..") or any(character in label for character in "/\\\0"):
        raise FeedbackLabelError(f"The class {label!r} cannot be used as a folder name, so "
                                 "feedback for it cannot be saved.")
    return root / label


def save_feedback(image: Image.Image, label: str) -> Path:
    """Save `image` as a JPEG (no metadata) with a generated name under the class's folder."""
    root = feedback_root()
    photo = jpeg_bytes(shrunk(image, PHOTO_SIDE), quality=90)
    config = current_app.config
    return save_capped(_class_folder(root, label), photo, "jpg",
                       max_files=int(config["FEEDBACK_MAX_FILES"]),
                       max_bytes=int(config["FEEDBACK_MAX_BYTES"]), cap_root=root)
