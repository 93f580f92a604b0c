"""Container bombs: valid files whose structure has as many tiny parts as asked.

Pillow walks these parts in Python before it decodes a pixel, so at full size (millions of
parts in under 20 MB) each costs seconds and hundreds of megabytes (bench/bounds.py measures
them). The tests build them with just past the caps in classifier/structure.py, which is small.
"""

from __future__ import annotations

import struct

from PIL import Image

from .hostile import png, png_chunk
from .imagemaker import encode

COMMENT_SEGMENT = b"\xff\xfe\x00\x02"  # an empty JPEG comment


def jpeg_with_segments(count: int) -> bytes:
    """A small JPEG with `count` empty comment segments after SOI."""
    data = encode(Image.new("RGB", (16, 16), (200, 30, 30)), "JPEG")
    return data[:2] + COMMENT_SEGMENT * count + data[2:]


def jpeg_with_padding(count: int) -> bytes:
    """A small JPEG with `count` fill bytes (0xFF) before its first segment."""
    data = encode(Image.new("RGB", (16, 16), (200, 30, 30)), "JPEG")
    return data[:2] + b"\xff" * count + data[2:]


def png_with_chunks(count: int) -> bytes:
    """A small grey PNG whose image data is split by `count` empty IDAT chunks."""
    whole = png(64, 64, 8, 0, b"".join(b"\x00" + bytes([16]) * 64 for _ in range(64)))
    first_data = whole.index(b"IDAT") - 4  # the chunk's length field
    length = int.from_bytes(whole[first_data : first_data + 4], "big")
    body = whole[first_data + 8 : first_data + 8 + length]
    split = png_chunk(b"IDAT", body[:1]) + png_chunk(b"IDAT", b"") * count
    split += png_chunk(b"IDAT", body[1:])
    return whole[:first_data] + split + whole[first_data + 12 + length :]


def gif_with_comment_blocks(count: int) -> bytes:
    """A small GIF with one comment extension of `count` one-byte sub-blocks before its picture."""
    data = encode(Image.new("P", (16, 16), 3), "GIF")
    picture = data.index(b"\x2c")  # image descriptor (the palette holds no 0x2c here)
    return data[:picture] + b"\x21\xfe" + b"\x01x" * count + b"\x00" + data[picture:]


def gif_with_stray_bytes(count: int) -> bytes:
    """A small GIF with `count` stray zero bytes before its picture (Pillow skips them)."""
    data = encode(Image.new("P", (16, 16), 3), "GIF")
    picture = data.index(b"\x2c")
    return data[:picture] + bytes(count) + data[picture:]


def tiff_of_tiles(width: int, height: int, big: bool = False) -> bytes:
    """An uncompressed 8-bit grey TIFF (or BigTIFF) of 1x1 tiles, all stored at one byte."""
    count = width * height
    offsets = struct.pack(f"<{count}H", *([8 if not big else 16] * count))
    tags = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # BlackIsZero
        (277, 3, 1, 1),  # SamplesPerPixel
        (322, 4, 1, 1),  # TileWidth
        (323, 4, 1, 1),  # TileLength
        (324, 3, count, 0),  # TileOffsets, stored below
    ]
    header_size = 16 if big else 8
    table_at = header_size + 8  # after the header and the one byte every tile points at
    directory_at = table_at + len(offsets)
    entry, number = ("<HHQQ", "<Q") if big else ("<HHII", "<H")
    directory = struct.pack(number, len(tags))
    for tag, kind, values, value in tags:
        directory += struct.pack(entry, tag, kind, values, table_at if tag == 324 else value)
    directory += struct.pack("<Q" if big else "<I", 0)
    if big:
        header = b"II+\x00" + struct.pack("<HHQ", 8, 0, directory_at)
    else:
        header = b"II*\x00" + struct.pack("<I", directory_at)
    return header + b"\x80" * 8 + offsets + directory


def bmp_rle8_of_short_rows(width: int, height: int) -> bytes:
    """An RLE8 BMP whose every row is one pixel then end-of-line: 4 bytes per row on disk, and
    Pillow's Python decoder pads the rest of each row a pixel at a time."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    body = b"\x01\x80\x00\x00" * height + b"\x00\x01"  # one pixel of 0x80, end of line; end
    offset = 14 + 40 + len(palette)
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(body), 2835, 2835, 256, 0
    )  # BITMAPINFOHEADER, 8 bits, compression 1 (RLE8)
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + info + palette + body


def _directory(entries: list[tuple[int, int, int, int]], after: int = 0) -> bytes:
    """A little-endian TIFF directory of (tag, type, count, value or offset) entries."""
    rows = b"".join(struct.pack("<HHII", *entry) for entry in entries)
    return struct.pack("<H", len(entries)) + rows + struct.pack("<I", after)


def exif_block(orientation: int, rationals: int) -> bytes:
    """An EXIF block (a TIFF header and one directory) that says to turn the picture by
    `orientation` and carries a private tag of `rationals` RATIONAL values (8 bytes each)."""
    values_at = 8 + 2 + 2 * 12 + 4
    entries = [(0x0112, 3, 1, orientation), (0xC000, 5, rationals, values_at)]
    values = b"\x01\x00\x00\x00" * 2 * rationals  # each 1/1
    return b"II*\x00" + struct.pack("<I", 8) + _directory(entries) + values


def with_exif(image: Image.Image, format: str, block: bytes) -> bytes:
    """`image` encoded as `format` with `block` as its EXIF (a PNG's eXIf or WebP's EXIF chunk)."""
    return encode(image, format, exif=block)


def tiff_with_exif_directory(rationals: int) -> bytes:
    """A 64x32 grey TIFF turned by its orientation (6), whose EXIF directory holds a private
    tag of `rationals` RATIONAL values: exif_transpose() unpacks them all when it rotates."""
    pixels = bytes([16]) * 64 * 32
    first_at = 8 + len(pixels)
    entries = [
        (256, 4, 1, 64),  # ImageWidth
        (257, 4, 1, 32),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, 1, 8),  # StripOffsets: the pixels, right after the header
        (274, 3, 1, 6),  # Orientation
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, 32),  # RowsPerStrip
        (279, 4, 1, len(pixels)),  # StripByteCounts
    ]
    exif_at = first_at + len(_directory(entries + [(0, 0, 0, 0)]))
    first = _directory(entries + [(0x8769, 4, 1, exif_at)])  # the EXIF directory
    values_at = exif_at + len(_directory([(0, 0, 0, 0)]))
    exif = _directory([(0xC000, 5, rationals, values_at)])
    values = b"\x01\x00\x00\x00" * 2 * rationals
    return b"II*\x00" + struct.pack("<I", first_at) + pixels + first + exif + values
