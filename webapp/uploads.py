"""Read the uploaded image from a request, and keep it on disk only when the user asked."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

from flask import current_app, request
from PIL import Image

from classifier import ImageError


class NoFileError(ImageError):
    """The request carries no image."""


def read_image_bytes() -> bytes:
    """The image from multipart field `file`, or from a raw body sent as `image/*`."""
    upload = request.files.get("file")
    if upload is not None:
        return upload.read()
    if request.mimetype.startswith("image/"):
        return request.get_data(cache=False)
    raise NoFileError("No image was sent: post it as multipart field `file`, or as the body "
                      "with an image/* Content-Type.")


def keep_upload(data: bytes) -> Path | None:
    """Save `data` under the uploads folder with a generated name, when KEEP_UPLOADS is on."""
    if not current_app.config["KEEP_UPLOADS"]:
        return None
    folder = Path(current_app.root_path) / current_app.config["UPLOAD_FOLDER"]
    folder.mkdir(parents=True, exist_ok=True)
    # the client's filename is never used: it races between clients and can carry a path
    extension = (Image.open(io.BytesIO(data)).format or "img").lower()
    path = folder / f"{uuid.uuid4().hex}.{extension}"
    path.write_bytes(data)
    return path
