"""An upload's container is counted before Pillow parses it: absurdly many parts get a 4xx."""

from __future__ import annotations

import pytest
from PIL import Image, PngImagePlugin

from classifier import decode, structure
from classifier.decode import MAX_EXIF_BYTES, MAX_PYTHON_DECODED_PIXELS, decode_image
from classifier.errors import ImageTooComplexError, ImageTooLargeError, UnreadableImageError
from classifier.structure import (
    MAX_GIF_PARTS,
    MAX_JPEG_METADATA_SEGMENTS,
    MAX_JPEG_PADDING,
    MAX_JPEG_SEGMENTS,
    MAX_PNG_CHUNKS,
    MAX_PNG_COMPRESSED_CHUNKS,
    MAX_TIFF_VALUES,
)

from .containers import (
    COMPRESSED_PNG_CHUNKS,
    bmp_rle8_of_short_rows,
    exif_block,
    gif_with_comment_blocks,
    gif_with_stray_bytes,
    jpeg_with_exif_segments,
    jpeg_with_padding,
    jpeg_with_photoshop_blocks,
    jpeg_with_segments,
    png_with_chunks,
    png_with_compressed_chunks,
    tiff_of_tiles,
    tiff_with_exif_directory,
)
from .imagemaker import encode
from .support import post_file

# parts either side of a cap in the files below: a TIFF's row of tiles, and more than the few
# segments, chunks or blocks a small encoded file has of its own
MARGIN = 250

# (name, builder of a file of `count` parts, the cap, what the sentence says)
BOMBS = [
    ("jpeg-segments", jpeg_with_segments, MAX_JPEG_SEGMENTS, "1,000 marker segments"),
    ("jpeg-padding", jpeg_with_padding, MAX_JPEG_PADDING, "65,536 bytes of padding"),
    ("png-chunks", png_with_chunks, MAX_PNG_CHUNKS, "50,000 chunks"),
    ("gif-comment-blocks", gif_with_comment_blocks, MAX_GIF_PARTS, "10,000 extension blocks"),
    ("gif-stray-bytes", gif_with_stray_bytes, MAX_GIF_PARTS, "10,000 extension blocks"),
    (
        "tiff-tiles",
        lambda count: tiff_of_tiles(-(-count // MARGIN), MARGIN),
        MAX_TIFF_VALUES,
        "50,000 tags and values",
    ),
    (
        "bigtiff-tiles",
        lambda count: tiff_of_tiles(-(-count // MARGIN), MARGIN, big=True),
        MAX_TIFF_VALUES,
        "50,000 tags and values",
    ),
    ("tiff-exif-directory", tiff_with_exif_directory, MAX_TIFF_VALUES, "50,000 tags and values"),
]
BOMB_IDS = [name for name, *_ in BOMBS]


@pytest.fixture
def pillow_never_opens(monkeypatch):
    """Fail the test if decode_image hands the bytes to Pillow's parser."""

    def refuse(*args, **kwargs):
        raise AssertionError("Image.open was called")

    monkeypatch.setattr(decode.Image, "open", refuse)


@pytest.mark.parametrize(("name", "build", "cap", "sentence"), BOMBS, ids=BOMB_IDS)
def test_a_file_of_too_many_parts_is_refused_before_pillow_parses_it(
    pillow_never_opens, name, build, cap, sentence
):
    with pytest.raises(ImageTooComplexError, match=f"more than {sentence}"):
        decode_image(build(cap + MARGIN), max_pixels=50_000_000)


@pytest.mark.parametrize(("name", "build", "cap", "sentence"), BOMBS, ids=BOMB_IDS)
def test_a_file_of_many_parts_within_the_cap_is_decoded(name, build, cap, sentence):
    assert decode_image(build(cap - MARGIN), max_pixels=50_000_000).mode == "RGB"


@pytest.mark.parametrize(("name", "build", "cap", "sentence"), BOMBS, ids=BOMB_IDS)
def test_a_file_of_too_many_parts_gets_400_with_a_sentence_over_the_api(
    client, name, build, cap, sentence
):
    response = post_file(client, build(cap + MARGIN), "bomb.bin")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("That ")
    assert sentence in response.get_json()["error"]


@pytest.mark.parametrize(("progressive", "fewest", "most"), [(False, 1, 1), (True, 2, 15)])
def test_a_jpeg_is_counted_by_its_scans(progressive, fewest, most):
    data = encode(Image.new("RGB", (64, 48), (9, 99, 199)), "JPEG", progressive=progressive)
    assert fewest <= structure.jpeg_parts(data).scans <= most


@pytest.mark.parametrize("added", [1, 5, 300])
def test_a_jpeg_is_counted_by_its_marker_segments(added):
    plain = structure.jpeg_parts(jpeg_with_segments(0)).segments
    assert structure.jpeg_parts(jpeg_with_segments(added)) == (plain + added, 1, 0, 0)


@pytest.mark.parametrize(
    ("count", "counted"), [(0, 0), (1, 1), (255, 255), (MAX_JPEG_PADDING, MAX_JPEG_PADDING)]
)
def test_fill_bytes_before_the_first_scan_are_counted_as_padding(count, counted):
    assert structure.jpeg_parts(jpeg_with_padding(count)).padding == counted


def test_the_counts_stop_just_past_the_cap_whatever_the_file_holds():
    segments = structure.jpeg_parts(jpeg_with_segments(50 * MAX_JPEG_SEGMENTS)).segments
    assert segments == MAX_JPEG_SEGMENTS + 1
    assert structure.png_parts(png_with_chunks(3 * MAX_PNG_CHUNKS)).chunks == MAX_PNG_CHUNKS + 1
    many = png_with_compressed_chunks(50 * MAX_PNG_COMPRESSED_CHUNKS, inflated=8)
    assert structure.png_parts(many).compressed == MAX_PNG_COMPRESSED_CHUNKS + 1
    padding = structure.jpeg_parts(jpeg_with_padding(50 * MAX_JPEG_PADDING)).padding
    assert padding == MAX_JPEG_PADDING + 1
    exif = structure.jpeg_parts(jpeg_with_exif_segments(50 * MAX_JPEG_METADATA_SEGMENTS))
    assert exif.metadata == MAX_JPEG_METADATA_SEGMENTS + 1
    assert structure.gif_parts(gif_with_stray_bytes(50 * MAX_GIF_PARTS)) == MAX_GIF_PARTS + 1


# builders of a JPEG of `count` metadata segments, each full
METADATA_BOMBS = {"exif": jpeg_with_exif_segments, "photoshop": jpeg_with_photoshop_blocks}


@pytest.mark.parametrize(
    ("data", "metadata"),
    [
        (encode(Image.new("RGB", (16, 16)), "JPEG"), 0),
        (encode(Image.new("RGB", (16, 16)), "JPEG", exif=b"Exif\x00\x00" + exif_block(6, 0)), 1),
        (jpeg_with_exif_segments(3), 3),
        (jpeg_with_photoshop_blocks(2), 2),
        (jpeg_with_segments(5), 0),  # comments are not metadata Pillow reads
    ],
)
def test_a_jpeg_is_counted_by_its_exif_and_photoshop_segments(data, metadata):
    assert structure.jpeg_parts(data).metadata == metadata


@pytest.mark.parametrize("build", METADATA_BOMBS.values(), ids=METADATA_BOMBS)
def test_a_jpeg_of_too_many_metadata_segments_is_refused_before_pillow_reads_them(
    pillow_never_opens, build
):
    with pytest.raises(ImageTooComplexError, match="more than 16 EXIF and Photoshop segments"):
        decode_image(build(MAX_JPEG_METADATA_SEGMENTS + 1), max_pixels=50_000_000)


@pytest.mark.parametrize("build", METADATA_BOMBS.values(), ids=METADATA_BOMBS)
def test_a_jpeg_of_as_many_metadata_segments_as_the_cap_is_decoded(build):
    data = build(MAX_JPEG_METADATA_SEGMENTS)
    assert decode_image(data, max_pixels=50_000_000).size == (16, 16)


def test_a_jpeg_of_too_many_metadata_segments_gets_400_with_a_sentence_over_the_api(client):
    response = post_file(client, jpeg_with_photoshop_blocks(100), "photoshop.jpg")
    assert response.status_code == 400
    assert "EXIF and Photoshop segments" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("data", "counts"),
    [
        (encode(Image.new("L", (64, 48)), "PNG"), (3, 0)),  # IHDR, IDAT, IEND
        (png_with_chunks(10), (14, 0)),
        (png_with_compressed_chunks(5, "iCCP", inflated=8), (8, 5)),
        (png_with_compressed_chunks(2, "iTXt", inflated=8), (5, 2)),
    ],
)
def test_a_png_is_counted_by_its_chunks_and_its_compressed_ones(data, counts):
    assert structure.png_parts(data) == counts


@pytest.mark.parametrize("kind", COMPRESSED_PNG_CHUNKS)
def test_a_png_of_too_many_compressed_chunks_is_refused_before_pillow_inflates_them(
    pillow_never_opens, kind
):
    data = png_with_compressed_chunks(MAX_PNG_COMPRESSED_CHUNKS + 1, kind)
    with pytest.raises(ImageTooComplexError, match="more than 16 compressed profile and text"):
        decode_image(data, max_pixels=50_000_000)


@pytest.mark.parametrize("kind", COMPRESSED_PNG_CHUNKS)
def test_a_png_of_as_many_compressed_chunks_as_the_cap_is_decoded(kind):
    data = png_with_compressed_chunks(MAX_PNG_COMPRESSED_CHUNKS, kind)
    assert decode_image(data, max_pixels=50_000_000).size == (64, 64)


def test_a_png_of_too_many_compressed_chunks_gets_400_with_a_sentence_over_the_api(client):
    response = post_file(client, png_with_compressed_chunks(200, "iCCP"), "profiles.png")
    assert response.status_code == 400
    assert "compressed profile and text chunks" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("data", "parts"),
    [(encode(Image.new("P", (16, 16)), "GIF"), 0), (gif_with_comment_blocks(7), 8)],
)
def test_a_gif_is_counted_by_its_blocks_before_the_picture(data, parts):
    assert structure.gif_parts(data) == parts


@pytest.mark.parametrize(
    ("data", "counted"),
    [
        (tiff_of_tiles(12, 10), 8 + 120),  # 8 one-value tags, and the tile table
        (tiff_of_tiles(12, 10, big=True), 8 + 120),
        (encode(Image.new("L", (64, 48)), "TIFF"), 9),  # nine one-value tags, one strip
        (tiff_with_exif_directory(300), 11 + 300),  # and the EXIF directory it points at
        (b"II*\x00", 0),  # too short for a directory: left to Pillow
        (b"II*\x00" + b"\xff" * 4 + bytes(8), 0),  # a directory past the end
        (b"II+\x00\x08\x00\x00\x00" + b"\xff" * 8 + bytes(8), 0),  # past any C size
    ],
)
def test_a_tiff_is_counted_by_the_entries_and_values_of_its_directories(data, counted):
    assert structure.tiff_values(data) == counted


def bigtiff_with_exif_pointer(offset: int) -> bytes:
    """A 1x1 BigTIFF whose first directory also points at an EXIF directory at `offset`."""
    return tiff_of_tiles(1, 1, big=True, extra=((0x8769, 16, 1, offset),))  # type IFD8


@pytest.mark.parametrize(
    ("offset", "decodes"),
    [(2**32 - 1, True), (2**63, False), (2**64 - 1, False)],  # past the end, past any C size
)
def test_a_bigtiff_directory_past_the_end_is_not_counted_and_never_a_crash(offset, decodes):
    data = bigtiff_with_exif_pointer(offset)
    assert structure.tiff_values(data) == structure.tiff_values(tiff_of_tiles(1, 1, big=True)) + 1
    if decodes:
        assert decode_image(data, max_pixels=50_000_000).mode == "RGB"
    else:
        with pytest.raises(UnreadableImageError):
            decode_image(data, max_pixels=50_000_000)


def test_a_tiff_directory_that_points_at_itself_is_counted_once():
    data = bytearray(tiff_with_exif_directory(0))
    exif_pointer = bytes(data).index(b"\x69\x87\x04\x00")  # tag 0x8769, type LONG
    first_at = int.from_bytes(data[4:8], "little")
    data[exif_pointer + 8 : exif_pointer + 12] = first_at.to_bytes(4, "little")
    assert structure.tiff_values(bytes(data)) == 11


# rationals that fill an EXIF block (38 bytes of header, directory and Orientation) to the cap
RATIONALS_AT_CAP = (MAX_EXIF_BYTES - 38) // 8


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
@pytest.mark.parametrize(("rationals", "size"), [(0, (32, 64)), (RATIONALS_AT_CAP, (32, 64))])
def test_the_exif_orientation_of_a_png_or_webp_is_applied(format, rationals, size):
    data = encode(Image.new("L", (64, 32), 40), format, exif=exif_block(6, rationals))
    assert decode_image(data, max_pixels=50_000_000).size == size


@pytest.fixture
def exif_transposes(monkeypatch):
    """The images decode_image asked Pillow to turn by their EXIF orientation."""
    seen: list[Image.Image] = []
    turn = decode.ImageOps.exif_transpose

    def record(image):
        seen.append(image)
        return turn(image)

    monkeypatch.setattr(decode.ImageOps, "exif_transpose", record)
    return seen


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
def test_an_exif_block_larger_than_a_jpeg_holds_is_ignored_unread(exif_transposes, format):
    block = exif_block(6, RATIONALS_AT_CAP + 1)
    data = encode(Image.new("L", (64, 32), 40), format, exif=block)
    assert decode_image(data, max_pixels=50_000_000).size == (64, 32)
    assert exif_transposes == []


def test_an_oversized_exif_block_as_png_text_is_ignored_unread(exif_transposes):
    block = exif_block(6, RATIONALS_AT_CAP + 1)
    text = f"\nexif\n{len(block):8}\n{block.hex()}\n"
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", text, zip=True)
    data = encode(Image.new("L", (64, 32), 40), "PNG", pnginfo=info)
    assert decode_image(data, max_pixels=50_000_000).size == (64, 32)
    assert exif_transposes == []


@pytest.mark.parametrize(
    ("size", "refused"),
    [
        ((2000, MAX_PYTHON_DECODED_PIXELS // 2000), False),
        ((2000, 2001), True),
        ((7000, 7000), True),
    ],
)
def test_a_run_length_bmp_has_a_smaller_pixel_limit_pillow_decodes_it_in_python(size, refused):
    data = bmp_rle8_of_short_rows(*size)
    if refused:
        with pytest.raises(ImageTooLargeError, match="run-length compression"):
            decode_image(data, max_pixels=50_000_000)
    else:
        assert decode_image(data, max_pixels=50_000_000, draft_size=224).mode == "RGB"


def test_an_uncompressed_bmp_of_the_same_size_is_not_held_to_that_limit():
    data = encode(Image.new("L", (2000, 2001), 128), "BMP")
    assert decode_image(data, max_pixels=50_000_000, draft_size=224).mode == "RGB"


def test_a_large_run_length_bmp_gets_413_with_a_sentence_over_the_api(client):
    response = post_file(client, bmp_rle8_of_short_rows(7000, 7000), "tiny.bmp")
    assert response.status_code == 413
    assert "save it as a PNG or JPEG" in response.get_json()["error"]
