"""Fuzzing the decode-and-predict entry point: any bytes give a Prediction or an ImageError.

Anything else escaping ModelService.predict_bytes (an IndexError from a Pillow plugin, a shape
error in the transforms, a hang) would be a 500 for the user, so it fails the test.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from classifier.errors import ImageError
from classifier.predictor import Prediction
from classifier.service import ModelService
from webapp.errors import status_of

from .hostile import picture, sixteen_bit_rgb_png, ycck_jpeg
from .imagemaker import encode
from .support import service_settings

# a small pixel limit keeps each example cheap; the code path is the same as with the default
FUZZ_MAX_PIXELS = 1_000_000
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def seed_images() -> list[bytes]:
    """Valid uploads in every accepted format and several modes, for the mutations to break."""
    mod, rocker = picture("mod", (40, 30)), picture("rocker", (30, 40))
    return [
        encode(mod, "JPEG", quality=80),
        encode(rocker, "JPEG", progressive=True),
        encode(mod.convert("CMYK"), "JPEG"),
        ycck_jpeg(rocker),
        encode(rocker, "PNG"),
        encode(mod.convert("P"), "PNG", transparency=0),
        encode(mod.convert("LA"), "PNG"),
        sixteen_bit_rgb_png(rocker),
        encode(mod.convert("P"), "GIF"),
        encode(rocker, "WEBP"),
        encode(mod, "WEBP", lossless=True),
        encode(rocker, "BMP"),
        encode(mod, "TIFF"),
        encode(rocker, "TIFF", compression="tiff_lzw"),
        encode(mod, "JPEG", exif=_exif_with_orientation(6)),
    ]


def _exif_with_orientation(value: int) -> Image.Exif:
    """An EXIF block holding just an Orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


SEEDS = seed_images()
MAGIC = [
    b"\xff\xd8\xff\xe0",
    b"\xff\xd8\xff\xe1",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"GIF87a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"\x00\x00\x01\x00",
    b"%!PS-Adobe-3.0",
    b"8BPS",
    b"\x00\x00\x00\x0cjP  ",
]


@st.composite
def mutated_images(draw) -> bytes:
    """A valid seed image with a few bytes flipped, overwritten, inserted, cut or truncated."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


@pytest.fixture(scope="module")
def service(model_path):
    """The serving path the app uses, on the tiny model."""
    service = ModelService(service_settings(model_path, max_pixels=FUZZ_MAX_PIXELS))
    service.start()
    yield service
    service.stop()


def predict_or_image_error(service: ModelService, data: bytes) -> None:
    """The property: a Prediction for the model's classes, or the app's own ImageError."""
    try:
        prediction = service.predict_bytes(data)
    except ImageError as error:
        assert status_of(error) in (400, 413, 415)
        assert str(error).endswith(".")
        return
    assert isinstance(prediction, Prediction)
    assert prediction.label in service.classes
    assert 0.0 <= prediction.confidence <= 1.0


@FUZZ
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes(service, data):
    predict_or_image_error(service, data)


@FUZZ
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=2048))
def test_image_signatures_followed_by_garbage(service, magic, tail):
    predict_or_image_error(service, magic + tail)


@settings(FUZZ, max_examples=300)
@given(data=mutated_images())
def test_mutated_valid_images(service, data):
    predict_or_image_error(service, data)


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_every_seed_is_a_valid_image(service, index):
    assert service.predict_bytes(SEEDS[index]).label in ("mod", "rocker")
