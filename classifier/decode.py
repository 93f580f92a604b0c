"""Decode uploaded bytes into an upright RGB Pillow image, in memory, or say clearly why not.

Every decode is bounded by what the image is, not only by its byte size (README, "Hostile
input"): only the accepted formats are ever parsed, and only once structure.py has counted the
parts of their containers (a JPEG's scans among them); the pixel limit is a memory budget in
bytes for the image's own mode, smaller for what Pillow decodes in Python; and the image is
reduced to the size asked for right after it is read, before any conversion copies it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from . import memory, structure
from .errors import (
    EmptyImageError,
    ImageTooLargeError,
    UnreadableImageError,
    UnsupportedImageError,
)

# The Pillow plugins that may parse an upload. MPO, the multi-picture JPEG many phone cameras
# write, is opened by the JPEG plugin; Pillow then reports it as its own format.
OPENED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF, BMP or TIFF"
# The budget for one decoded image is MAX_PIXELS pixels of 8-bit RGB
BUDGET_BYTES_PER_PIXEL = 3
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 2, "I;16B": 2,
                    "I;16L": 2, "I;16N": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3}  # fmt: skip
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
# a decode that held this many pixels returns the memory they took (memory.py) when it is done
RELEASE_AFTER_PIXELS = 4_000_000
_BAND_ROWS = 256  # rows of a palette or 16-bit image converted at once (about)
# Pillow decodes run-length-compressed BMPs in Python, at up to 0.12 us a pixel (an RLE8 file of
# 28 KB that ends each 7000-pixel row after one pixel took 5.9 s), so they get a smaller limit
MAX_PYTHON_DECODED_PIXELS = 4_000_000
_PYTHON_DECODERS = frozenset({"bmp_rle"})
# the most a JPEG's EXIF segment holds. A PNG's eXIf or a WebP's EXIF chunk can fill the upload,
# and exif_transpose() unpacks every number in it, a Python object each, when it rotates (a 16 MB
# block: 17 s and 600 MB), so a larger block is ignored, orientation and all. (A TIFF's own
# directories are counted by structure.py.)
MAX_EXIF_BYTES = 65_535


def _article(name: str) -> str:
    """'an' before a vowel sound (an ICO, an EPS), 'a' otherwise (a DDS, a PSD)."""
    return "an" if name[:1].upper() in "AEFHILMNORSX" else "a"


def _refused_format(data: bytes) -> str | None:
    """The name of the format `data` looks like, by its first bytes only (nothing is parsed)."""
    Image.init()
    prefix = data[:16]
    for name, (_, accept) in Image.OPEN.items():
        if name not in OPENED_FORMATS and accept is not None:
            try:
                if accept(prefix):
                    return name
            except Exception:  # noqa: BLE001 - a plugin's prefix test failing means "not mine"
                continue
    return None


def _open(data: bytes) -> ImageFile.ImageFile:
    """Open the image header with the accepted plugins only; no pixels are decoded yet."""
    if not data:
        raise EmptyImageError("The upload is empty: choose a photo and send it again.")
    try:
        with warnings.catch_warnings():
            # the pixel limit is checked below, with a sentence; Pillow's warning only adds noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=OPENED_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(
            "That image's dimensions are too large to process: send a smaller photo."
        ) from error
    # any exception a plugin's header parser raises (NotImplementedError, struct.error, ...)
    except Exception as error:
        name = _refused_format(data) if isinstance(error, UnidentifiedImageError) else None
        if name:
            raise UnsupportedImageError(
                f"That file is {_article(name)} {name} image, which is not accepted: "
                f"send a {ACCEPTED_NAMES}."
            ) from error
        raise UnreadableImageError(
            f"That file could not be read as an image: send a {ACCEPTED_NAMES} photo."
        ) from error


def bytes_per_pixel(mode: str) -> int:
    """How many bytes Pillow holds per pixel of `mode` (4 for RGBA, I and F, 1 for P)."""
    return _BYTES_PER_PIXEL.get(mode, 4)


def _check_budget(image: Image.Image, max_pixels: int) -> None:
    """Refuse an image whose pixels, in its own mode, exceed MAX_PIXELS of 8-bit RGB."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"That image is {width}x{height} pixels, more than the limit of {max_pixels:,}: "
            "send a smaller photo."
        )
    needed = width * height * bytes_per_pixel(image.mode)
    budget = max_pixels * BUDGET_BYTES_PER_PIXEL
    if needed > budget:
        raise ImageTooLargeError(
            f"That image is {width}x{height} pixels of {image.mode}, which would take "
            f"{needed / 2**20:,.0f} MB to decode, more than the limit of {budget / 2**20:,.0f} MB "
            f"({max_pixels:,} pixels of 8-bit RGB): send a smaller photo, or save it as an "
            "8-bit JPEG or PNG."
        )


def _check_decoder(image: ImageFile.ImageFile) -> None:
    """Refuse an image larger than MAX_PYTHON_DECODED_PIXELS that Pillow would decode in Python."""
    width, height = image.size
    slow = any(tile.codec_name in _PYTHON_DECODERS for tile in image.tile)
    if slow and width * height > MAX_PYTHON_DECODED_PIXELS:
        raise ImageTooLargeError(
            f"That image is {width}x{height} pixels stored with run-length compression, which "
            f"is slow to decode, and more than the limit of {MAX_PYTHON_DECODED_PIXELS:,} "
            "pixels for such files: save it as a PNG or JPEG."
        )


def _factor(image: Image.Image, size: int | None) -> int:
    """The whole factor `image` may shrink by while both sides stay at least `size`."""
    return max(min(image.size) // size, 1) if size else 1


def _top_byte(band: Image.Image) -> Image.Image:
    """A 16-bit band as 8-bit grey: the top byte of each value (Pillow's convert() clips 16-bit
    values at 255, a near-white image)."""
    values = np.asarray(band).astype("<u2", copy=False)
    return Image.fromarray(np.ascontiguousarray(values.view(np.uint8)[..., 1::2]))


def _converted_in_bands(image: Image.Image, factor: int) -> Image.Image:
    """A palette, 1-bit or 16-bit `image` as 8-bit, shrunk by `factor`, a band of rows at a time.

    Pillow can reduce neither palette indices nor 16-bit values, so these must be converted
    first; converting the whole image would make a full-size copy of 4 bytes per pixel beside
    it (196 MB at 49 MP). Bands of a multiple of `factor` rows reduce to exactly the rows a
    whole-image reduce gives.
    """
    width, height = image.size
    rows = max(_BAND_ROWS // factor, 1) * factor
    result = None
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        band = _top_byte(band) if image.mode in SIXTEEN_BIT_MODES else band.convert("RGB")
        band = band.reduce(factor) if factor > 1 else band
        if result is None:
            result = Image.new(band.mode, (-(-width // factor), -(-height // factor)))
        result.paste(band, (0, top // factor))
    assert result is not None  # an image has at least one row
    return result


def _small_rgb(image: Image.Image, size: int | None) -> Image.Image:
    """`image` as 8-bit RGB, shrunk by a whole factor while both sides stay at least `size`
    (Image.reduce: one cheap box filter; the learner's own resize then does the rest), as
    fastai's own loader converts training images. Shrunk first, so that conversion copies the
    small image only."""
    factor = _factor(image, size)
    if image.mode in ("P", "PA", "1") or image.mode in SIXTEEN_BIT_MODES:
        image = _converted_in_bands(image, factor)
    elif factor > 1:
        image = image.reduce(factor)
    if image.mode in ("I", "F"):
        high = image.getextrema()[1]
        scale = 255.0 / max(float(high), 1.0)  # type: ignore[arg-type]  # one band: a number
        image = image.point(lambda value: value * scale).convert("L")
    return image if image.mode == "RGB" else image.convert("RGB")


def _exif_bytes(image: Image.Image) -> int:
    """The size of the EXIF block Pillow would read for `image`, less the "Exif" header some
    formats keep (a PNG may hold the block as hex text)."""
    block = image.info.get("exif", image.info.get("Raw profile type exif", b""))
    if isinstance(block, str):
        return len(block) // 2
    return len(block) - (6 if block.startswith(b"Exif\x00\x00") else 0)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phones store photos sideways); ignore a corrupt EXIF block,
    or one larger than a JPEG can hold."""
    try:
        if _exif_bytes(image) > MAX_EXIF_BYTES:
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not cost the user the photo
        return image


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    draft_size: int | None = None,
    release_memory: bool = False,
) -> Image.Image:
    """Decode `data` to an upright RGB image within the budget of `max_pixels`
    (SEAFRONT_MAX_PIXELS), reduced while both sides stay at least `draft_size`; with
    `release_memory`, give the memory of a large image back to the system afterwards.

    Raises an ImageError subclass, whose message is a sentence for the user, on anything else.
    """
    image, held = _decode(data, max_pixels, draft_size)
    # the full-size image was freed with _decode's frame
    if release_memory and held >= RELEASE_AFTER_PIXELS:
        memory.release_free_memory()
    return image


def _decode(data: bytes, max_pixels: int, draft_size: int | None) -> tuple[Image.Image, int]:
    """decode_image's work: the image, and how many pixels it held as read (after draft())."""
    structure.check_parts(data)
    image = _open(data)
    _check_budget(image, max_pixels)
    _check_decoder(image)
    if draft_size and image.format in ("JPEG", "MPO"):
        # JPEG can decode at 1/2, 1/4 or 1/8 scale for a fraction of the cost; Pillow picks
        # the smallest scale that still covers the requested size.
        image.draft("RGB", (draft_size, draft_size))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            # rotation copies the small image only
            return _upright(_small_rgb(image, draft_size)), image.width * image.height
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(
            "That image is too large to process: send a smaller photo."
        ) from error
    # Pillow's decoders raise many exception types on corrupt input (OSError for truncated
    # files, SyntaxError, ValueError, struct.error, IndexError, NotImplementedError, ...), so
    # the net is wide
    except Exception as error:
        raise UnreadableImageError(
            "That image is damaged or truncated and could not be decoded: send the photo again "
            "or try another file."
        ) from error
