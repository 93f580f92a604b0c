"""Container bombs: valid files whose structure has as many tiny parts as asked.

Pillow walks these parts in Python before it decodes a pixel, so at full size (millions of
parts in under 20 MB) each costs seconds and hundreds of megabytes (bench/bounds.py measures
them). The tests build them with just past the caps in classifier/structure.py, which is small.
"""

from __future__ import annotations

import struct
import zlib

from PIL import Image

from .hostile import png, png_chunk
from .imagemaker import encode

COMMENT_SEGMENT = b"\xff\xfe\x00\x02"  # an empty JPEG comment


def _small_jpeg_with(extra: bytes) -> bytes:
    """A small red JPEG with `extra` right after its SOI marker."""
    data = encode(Image.new("RGB", (16, 16), (200, 30, 30)), "JPEG")
    return data[:2] + extra + data[2:]


def jpeg_with_segments(count: int) -> bytes:
    """A small JPEG with `count` empty comment segments after SOI."""
    return _small_jpeg_with(COMMENT_SEGMENT * count)


def jpeg_with_padding(count: int) -> bytes:
    """A small JPEG with `count` fill bytes (0xFF) before its first segment."""
    return _small_jpeg_with(b"\xff" * count)


def _jpeg_with_app_segments(marker: bytes, body: bytes, count: int) -> bytes:
    """A small JPEG with `count` copies of the APP segment `marker` holding `body` after SOI."""
    return _small_jpeg_with((marker + struct.pack(">H", len(body) + 2) + body) * count)


def jpeg_with_photoshop_blocks(segments: int) -> bytes:
    """A small JPEG with `segments` full Photoshop (APP13) segments of empty 12-byte resource
    blocks, which Pillow reads one by one (5,400 a segment)."""
    block = b"8BIM" + struct.pack(">HHI", 0x0404, 0, 0)
    return _jpeg_with_app_segments(b"\xff\xed", b"Photoshop 3.0\x00" + block * 5_400, segments)


def jpeg_with_exif_segments(segments: int) -> bytes:
    """A small JPEG with `segments` full EXIF (APP1) segments, which Pillow joins into one block
    a segment at a time."""
    return _jpeg_with_app_segments(b"\xff\xe1", b"Exif\x00\x00" + bytes(65_500), segments)


def _grey_png() -> bytes:
    """A 64x64 grey PNG of one IDAT chunk."""
    return png(64, 64, 8, 0, b"".join(b"\x00" + bytes([16]) * 64 for _ in range(64)))


def png_with_chunks(count: int) -> bytes:
    """A small grey PNG whose image data is split by `count` empty IDAT chunks."""
    whole = _grey_png()
    first_data = whole.index(b"IDAT") - 4  # the chunk's length field
    length = int.from_bytes(whole[first_data : first_data + 4], "big")
    body = whole[first_data + 8 : first_data + 8 + length]
    split = png_chunk(b"IDAT", body[:1]) + png_chunk(b"IDAT", b"") * count
    split += png_chunk(b"IDAT", body[1:])
    return whole[:first_data] + split + whole[first_data + 12 + length :]


# the compressed chunks Pillow inflates: chunk type, the fields before the compressed data (of
# chunk number i), and the byte the inflated data repeats
COMPRESSED_PNG_CHUNKS = {
    "iCCP": (b"iCCP", lambda i: b"profile\x00\x00", b"a"),
    "zTXt": (b"zTXt", lambda i: b"note%d\x00\x00" % i, b"a"),
    "zTXt-without-key": (b"zTXt", lambda i: b"\x00\x00", b"a"),
    "iTXt": (b"iTXt", lambda i: b"note%d\x00\x01\x00\x00\x00" % i, b"a"),
    "iTXt-not-utf8": (b"iTXt", lambda i: b"note%d\x00\x01\x00\x00\x00" % i, b"\xff"),
}


def png_with_compressed_chunks(count: int, kind: str = "zTXt", inflated: int = 2**20 - 64) -> bytes:
    """A small grey PNG with `count` compressed chunks of COMPRESSED_PNG_CHUNKS[kind], each a
    kilobyte on disk that inflates to `inflated` bytes (Pillow's MAX_TEXT_CHUNK is 1 MB)."""
    chunk_type, fields, filler = COMPRESSED_PNG_CHUNKS[kind]
    whole = _grey_png()
    compressed = zlib.compress(filler * inflated, 9)
    extra = b"".join(png_chunk(chunk_type, fields(i) + compressed) for i in range(count))
    after_header = 8 + 25  # the signature and IHDR
    return whole[:after_header] + extra + whole[after_header:]


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


def _directory(entries: list[tuple[int, int, int, int]], big: bool = False) -> bytes:
    """A little-endian TIFF (or BigTIFF) directory of (tag, type, count, value or offset)
    entries, the last in its file."""
    entry, number, offset = ("<HHQQ", "<Q", "<Q") if big else ("<HHII", "<H", "<I")
    rows = b"".join(struct.pack(entry, *row) for row in entries)
    return struct.pack(number, len(entries)) + rows + struct.pack(offset, 0)  # no next directory


def _directory_size(entries: int) -> int:
    """The bytes of a classic TIFF directory of `entries` entries."""
    return 2 + 12 * entries + 4


def _rationals(count: int) -> bytes:
    """`count` RATIONAL values of 1/1, as a TIFF stores them."""
    return struct.pack("<II", 1, 1) * count


def tiff_of_tiles(
    width: int, height: int, big: bool = False, extra: tuple[tuple[int, int, int, int], ...] = ()
) -> bytes:
    """An uncompressed 8-bit grey TIFF (or BigTIFF) of 1x1 tiles, all stored at one byte; its
    directory ends with the `extra` entries (tag, type, count, value), tags above 324."""
    count = width * height
    header_size = 16 if big else 8
    offsets = struct.pack(f"<{count}H", *([header_size] * count))
    table_at = header_size + 8  # after the header and the one byte every tile points at
    directory = _directory(
        [
            (256, 4, 1, width),  # ImageWidth
            (257, 4, 1, height),  # ImageLength
            (258, 3, 1, 8),  # BitsPerSample
            (259, 3, 1, 1),  # no compression
            (262, 3, 1, 1),  # BlackIsZero
            (277, 3, 1, 1),  # SamplesPerPixel
            (322, 4, 1, 1),  # TileWidth
            (323, 4, 1, 1),  # TileLength
            (324, 3, count, table_at),  # TileOffsets
            *extra,
        ],
        big,
    )
    directory_at = table_at + len(offsets)
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


def exif_block(orientation: int, rationals: int) -> bytes:
    """An EXIF block (a TIFF header and one directory) that says to turn the picture by
    `orientation` and carries a private tag of `rationals` RATIONAL values (8 bytes each)."""
    values_at = 8 + _directory_size(2)
    entries = [(0x0112, 3, 1, orientation), (0xC000, 5, rationals, values_at)]
    return b"II*\x00" + struct.pack("<I", 8) + _directory(entries) + _rationals(rationals)


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
    exif_at = first_at + _directory_size(len(entries) + 1)
    first = _directory([*entries, (0x8769, 4, 1, exif_at)])  # the EXIF directory
    exif = _directory([(0xC000, 5, rationals, exif_at + _directory_size(1))])
    header = b"II*\x00" + struct.pack("<I", first_at)
    return header + pixels + first + exif + _rationals(rationals)
