"""Decode uploaded bytes into an upright RGB Pillow image, in memory, or say clearly why not."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    EmptyImageError,
    ImageTooLargeError,
    UnreadableImageError,
    UnsupportedImageError,
)

# MPO is the multi-picture JPEG many phone cameras write; Pillow reports it as its own format.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF, BMP or TIFF"
HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def _open(data: bytes) -> Image.Image:
    """Open the image header; no pixels are decoded yet."""
    if not data:
        raise EmptyImageError("The upload is empty: choose a photo and send it again.")
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(
            "That image's dimensions are too large to process: send a smaller photo."
        ) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UnreadableImageError(
            f"That file could not be read as an image: send a {ACCEPTED_NAMES} photo."
        ) from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB, as fastai's own loader does for training images."""
    if image.mode in HIGH_BIT_MODES:
        # Pillow's convert() clips 16-bit values at 255 (a near-white image); scale instead
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        image = Image.fromarray(np.clip(np.rint(pixels * (255.0 / top)), 0, 255).astype(np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phones store photos sideways); ignore a corrupt EXIF block."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not cost the user the photo
        return image


def decode_image(data: bytes, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode `data` to an upright RGB image of at most `max_pixels` (SEAFRONT_MAX_PIXELS); JPEGs
    at reduced scale when `draft_size` allows.

    Raises an ImageError subclass, whose message is a sentence for the user, on anything else.
    """
    image = _open(data)
    if image.format not in ACCEPTED_FORMATS:
        raise UnsupportedImageError(
            f"That file is a {image.format} image, which is not accepted: send a {ACCEPTED_NAMES}."
        )
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"That image is {width}x{height} pixels, more than the limit of {max_pixels:,}: "
            "send a smaller photo."
        )
    if draft_size and image.format in ("JPEG", "MPO"):
        # JPEG can decode at 1/2, 1/4 or 1/8 scale for a fraction of the cost; Pillow picks
        # the smallest scale that still covers the requested size.
        image.draft("RGB", (draft_size, draft_size))
    try:
        image.load()
        return _to_rgb(_upright(image))
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(
            "That image is too large to process: send a smaller photo."
        ) from error
    # Pillow's decoders raise many exception types on corrupt input (OSError for truncated
    # files, SyntaxError, ValueError, struct.error, IndexError, ...), so the net is wide
    except Exception as error:
        raise UnreadableImageError(
            "That image is damaged or truncated and could not be decoded: send the photo again "
            "or try another file."
        ) from error
