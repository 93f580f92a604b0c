"""Real photographs for the benchmark and the tests: scikit-learn's sample photos as JPEGs.

scikit-learn ships two real 640x427 photographs (china.jpg, flower.jpg), so no download is
needed. They are cropped to 4:3 and resized, then saved as quality-90 JPEGs: 4000x3000 is a
12-megapixel phone photo, 640x480 a small web image. Real camera photos hold more fine detail,
so their files are larger and decode somewhat slower than these upscaled ones.
"""

from __future__ import annotations

import io
from functools import cache

from PIL import Image
from sklearn.datasets import load_sample_image

PHOTO_NAMES = ("china.jpg", "flower.jpg")
TWELVE_MP = (4000, 3000)
VGA = (640, 480)


@cache
def sample_photo(name: str) -> Image.Image:
    """One of scikit-learn's sample photographs, centre-cropped to 4:3 (569x427)."""
    image = Image.fromarray(load_sample_image(name))
    width, height = image.size
    crop = round(height * 4 / 3)
    left = (width - crop) // 2
    return image.crop((left, 0, left + crop, height))


@cache
def photo_jpeg(
    name: str = "china.jpg", size: tuple[int, int] = TWELVE_MP, quality: int = 90
) -> bytes:
    """The photo `name` resized to `size` and encoded as a JPEG of `quality`."""
    buffer = io.BytesIO()
    sample_photo(name).resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
