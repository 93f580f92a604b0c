"""Save a photo the user says the model got wrong as `uploads/feedback/<label>/<uuid>.jpg`.

`python train.py fit --extra uploads/feedback` takes these class folders in as extra data.
Interim: the cap below is this module's own; the lead switches it to the shared keep-uploads
cap of webapp/uploads.py (issue 5) when that lands.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path

from flask import current_app
from PIL import Image

from .results import PHOTO_SIDE, jpeg_bytes, shrunk

log = logging.getLogger(__name__)
FEEDBACK_FOLDER = "feedback"
_cap_lock = threading.Lock()


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
    folder = _class_folder(feedback_root(), label)
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    path = folder / f"{name}.jpg"
    partial = folder / f".{name}.partial"  # training never sees a half-written file
    partial.write_bytes(jpeg_bytes(shrunk(image, PHOTO_SIDE), quality=90))
    os.replace(partial, path)
    _enforce_cap(feedback_root())
    return path


def _enforce_cap(root: Path) -> None:
    """Delete the oldest feedback photos beyond FEEDBACK_MAX_FILES or FEEDBACK_MAX_BYTES."""
    max_files = int(current_app.config["FEEDBACK_MAX_FILES"])
    max_bytes = int(current_app.config["FEEDBACK_MAX_BYTES"])
    with _cap_lock:
        photos = []
        for path in root.glob("*/*.jpg"):
            try:
                status = path.stat()
            except FileNotFoundError:  # removed by another worker meanwhile
                continue
            photos.append((status.st_mtime_ns, status.st_size, path))
        photos.sort()
        total = sum(size for _, size, _ in photos)
        while photos and (len(photos) > max_files or total > max_bytes):
            _, size, oldest = photos.pop(0)
            oldest.unlink(missing_ok=True)
            total -= size
            log.info("Feedback cap reached: removed the oldest photo %s", oldest)
