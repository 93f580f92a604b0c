"""Each decode is bounded by what the image is: scans, formats, bytes per pixel, decodes at once."""

from __future__ import annotations

import base64
import io
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from classifier import decode, memory
from classifier.decode import decode_image
from classifier.errors import ImageTooComplexError, ImageTooLargeError, UnsupportedImageError
from classifier.structure import MAX_JPEG_SCANS, jpeg_parts

from .imagemaker import encode
from .support import post_file

SCAN_START = b"\xff\xda"


def noisy(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A picture of noise (so that every scan of a progressive JPEG carries data)."""
    rng = np.random.default_rng(0)
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(), "RGB" if bands == 3 else None).convert(mode)


def progressive_jpeg(size=(400, 300)) -> bytes:
    """An ordinary progressive JPEG."""
    return encode(noisy(size), "JPEG", progressive=True, quality=90)


def scan_bomb(repeats: int, size=(400, 300)) -> bytes:
    """A progressive JPEG whose last scan is repeated `repeats` times (the issue's CPU bomb)."""
    data = progressive_jpeg(size)
    last_scan = data.rindex(SCAN_START)
    scan = data[last_scan:-2]  # up to the EOI marker
    return data[:-2] + scan * repeats + data[-2:]


def test_an_ordinary_progressive_jpeg_has_about_ten_scans():
    assert 2 <= jpeg_parts(progressive_jpeg()).scans <= 15


def test_a_baseline_jpeg_has_one_scan():
    assert jpeg_parts(encode(noisy((64, 48)), "JPEG")).scans == 1


@pytest.mark.parametrize("repeats", [MAX_JPEG_SCANS + 1, 20_000])
def test_a_jpeg_of_repeated_scans_is_refused_before_it_is_decoded(repeats):
    bomb = scan_bomb(repeats)
    started = time.perf_counter()
    with pytest.raises(ImageTooComplexError, match="more than 100 scans"):
        decode_image(bomb, max_pixels=50_000_000)
    assert time.perf_counter() - started < 1.0  # decoding it would take seconds


@pytest.mark.parametrize("junk", [b"\x00", b"\x00" * 1000, b"\xff\x00", b"\xff" * 7])
@pytest.mark.parametrize("before_scan", [0, 1, 50])
def test_junk_between_scans_does_not_hide_them(junk, before_scan):
    # libjpeg skips stray bytes before a marker with a warning, and decodes the scans behind
    bomb = scan_bomb(MAX_JPEG_SCANS + 10, size=(64, 48))
    starts = [i for i in range(len(bomb) - 1) if bomb[i : i + 2] == SCAN_START]
    at = starts[before_scan]
    bomb = bomb[:at] + junk + bomb[at:]
    with pytest.raises(ImageTooComplexError, match="more than 100 scans"):
        decode_image(bomb, max_pixels=50_000_000)


def test_a_jpeg_with_a_few_repeated_scans_still_decodes():
    assert decode_image(scan_bomb(5), max_pixels=50_000_000).size == (400, 300)


def test_the_scan_bomb_gets_a_4xx_with_a_sentence_over_the_api(client):
    response = post_file(client, scan_bomb(300, size=(200, 150)), "bomb.jpg")
    assert response.status_code == 400
    assert "scans" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("mode", "pixels", "refused"),
    [
        ("RGB", 10_000, False),  # 30,000 bytes: the budget of 10,000 pixels of 8-bit RGB
        ("L", 10_000, False),
        ("RGBA", 7_500, False),  # 30,000 bytes
        ("RGBA", 8_000, True),  # 32,000 bytes
        ("I;16", 10_000, False),  # 20,000 bytes
        ("F", 8_000, True),
    ],
)
def test_the_pixel_limit_is_a_budget_in_bytes_for_the_images_own_mode(mode, pixels, refused):
    image = Image.new(mode, (100, pixels // 100))
    data = encode(image, "TIFF")
    if refused:
        with pytest.raises(ImageTooLargeError, match="MB to decode"):
            decode_image(data, max_pixels=10_000)
    else:
        assert decode_image(data, max_pixels=10_000).mode == "RGB"


@pytest.mark.parametrize(
    ("value", "grey"), [(0, 0), (255, 0), (256, 1), (40_000, 156), (65_535, 255)]
)
def test_a_16_bit_image_keeps_the_top_byte_of_each_value(value, grey):
    image = Image.fromarray(np.full((8, 8), value, dtype="<u2"))
    assert image.mode == "I;16"
    assert decode_image(encode(image), max_pixels=1_000).getpixel((0, 0)) == (grey,) * 3


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16", "F"])
def test_a_large_image_is_reduced_to_what_was_asked_right_after_reading(mode):
    image = noisy((960, 640), "RGB").convert("L" if mode in ("I;16", "F") else mode)
    if mode in ("I;16", "F"):
        image = Image.fromarray(np.asarray(image).astype("<u2" if mode == "I;16" else "<f4"))
    decoded = decode_image(encode(image, "TIFF"), max_pixels=10_000_000, draft_size=200)
    assert decoded.mode == "RGB"
    assert 200 <= min(decoded.size) < 400  # reduced by a whole factor, never below the ask


@pytest.mark.parametrize(
    ("mode", "size", "draft_size"),
    [("P", (1000, 700), 200), ("P", (900, 611), 150), ("1", (1300, 997), 100), ("P", (64, 48), 40)],
)
def test_a_palette_image_reduced_in_bands_is_the_whole_image_converted_then_reduced(
    mode, size, draft_size
):
    image = noisy(size, "RGB").convert(mode)
    factor = min(size) // draft_size
    expected = image.convert("RGB")
    expected = expected.reduce(factor) if factor > 1 else expected
    decoded = decode_image(encode(image, "PNG"), max_pixels=10_000_000, draft_size=draft_size)
    assert decoded.size == expected.size
    assert decoded.tobytes() == expected.tobytes()


def test_the_c_library_here_can_return_free_memory_to_the_system():
    assert memory.release_free_memory()  # glibc, as on every Linux this runs on


@pytest.mark.parametrize(
    ("size", "format", "release_memory", "released"),
    [
        ((2000, 2000), "PNG", True, True),  # 4 MP decoded at full size
        ((1999, 2000), "PNG", True, False),  # just under
        ((2000, 2000), "PNG", False, False),  # SEAFRONT_RELEASE_MEMORY=false
        ((4000, 3000), "JPEG", True, False),  # a 12 MP JPEG drafted to 1/8 holds 0.2 MP
    ],
)
def test_a_large_decode_gives_its_memory_back_when_it_is_done(
    monkeypatch, size, format, release_memory, released
):
    calls = []
    monkeypatch.setattr(decode.memory, "release_free_memory", lambda: calls.append(1) or True)
    data = encode(Image.new("RGB", size, (200, 30, 30)), format)
    decode_image(data, max_pixels=50_000_000, draft_size=224, release_memory=release_memory)
    assert calls == ([1] if released else [])


@pytest.mark.parametrize(
    ("format", "sentence"),
    [("ICO", "an ICO image"), ("DDS", "a DDS image"), ("PPM", "a PPM image")],
)
def test_a_refused_format_is_named_with_its_article_and_never_parsed(format, sentence):
    data = encode(noisy((32, 32), "RGBA" if format == "DDS" else "RGB"), format)
    with pytest.raises(UnsupportedImageError, match=sentence):
        decode_image(data, max_pixels=1_000_000)


def test_a_dds_header_pillow_cannot_decode_is_a_415_not_a_500(client):
    # a DDS header with an unimplemented pixel format: Pillow's plugin raises NotImplementedError
    header = bytearray(b"DDS " + (124).to_bytes(4, "little") + bytes(120))
    header[12:16] = (64).to_bytes(4, "little")  # height
    header[16:20] = (64).to_bytes(4, "little")  # width
    header[76:80] = (32).to_bytes(4, "little")  # pixel format size
    header[80:84] = (0x4).to_bytes(4, "little")  # DDPF_FOURCC
    header[84:88] = b"ZZZZ"  # no such FourCC
    response = post_file(client, bytes(header) + bytes(4096), "odd.dds")
    assert response.status_code == 415
    assert "a DDS image" in response.get_json()["error"]


def test_an_image_over_pillows_own_limit_gets_413_without_a_warning_in_the_log():
    bomb = encode(Image.new("1", (10_000, 10_000)))  # 100 MP, over Pillow's 89 MP warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLargeError):
            decode_image(bomb, max_pixels=50_000_000)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_the_page_thumbnail_of_a_photo_is_at_least_256_px_whatever_the_models_input(client):
    photo = encode(noisy((640, 427)), "JPEG", quality=90)
    response = client.post(
        "/api/predict?thumbnail=1",
        data={"file": (io.BytesIO(photo), "photo.jpg")},
        content_type="multipart/form-data",
    )
    thumbnail = response.get_json()["thumbnail"].split(",", 1)[1]
    assert max(Image.open(io.BytesIO(base64.b64decode(thumbnail))).size) >= 256


def test_decodes_beyond_max_decodes_wait_their_turn_then_get_503_with_retry_after(make_app):
    app = make_app(MAX_DECODES=1, REQUEST_TIMEOUT=0.5)
    service = app.extensions["seafront.model"]
    service._decoding.acquire()  # one slow decode holds the only slot
    try:
        response = post_file(app.test_client(), encode(noisy((64, 48))))
    finally:
        service._decoding.release()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "busy decoding" in response.get_json()["error"]


def test_a_decode_waits_for_a_slot_that_frees_up(make_app):
    app = make_app(MAX_DECODES=1, REQUEST_TIMEOUT=10)
    service = app.extensions["seafront.model"]
    service._decoding.acquire()
    threading.Timer(0.3, service._decoding.release).start()
    assert post_file(app.test_client(), encode(noisy((64, 48)))).status_code == 200
