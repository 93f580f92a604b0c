"""Count the parts of an upload's container before Pillow parses any of it, and refuse absurd ones.

Pillow walks a file's structure in Python: a JPEG's marker segments and the padding between
them, a PNG's chunks, a GIF's extension blocks and a TIFF's directories and strip tables, at
about a microsecond and up to 300 bytes of memory for each part. A 20 MB file of millions of
tiny parts therefore costs seconds and gigabytes before one pixel is decoded (a 6 MB TIFF of 3
million 1x1 tiles: 21 s and 950 MB; `python -m bench.bounds --measure containers`), and a JPEG
of thousands of repeated scans costs a pass over every pixel for each. Some metadata costs far
more than its bytes: a PNG's compressed profiles and text are inflated, a JPEG's EXIF segments
joined and its Photoshop resources read one by one, so those are counted too. Real photos have
tens of parts, so each cap below is far above them. Each walk here stops as soon as a count
passes its cap and skips pixel data with a regular expression, so it costs a few milliseconds
at most, whatever the file. Pillow offers no such limits (its MAX_TEXT_CHUNK and
MAX_TEXT_MEMORY bound the PNG text it keeps, not the chunks it inflates).
"""

from __future__ import annotations

import re
import struct
from typing import Literal, NamedTuple

from .errors import ImageTooComplexError

# Real progressive photos have about 10 scans; each scan costs a pass over every pixel, so a
# file of thousands of tiny repeated scans is a CPU bomb (1.3 ms per scan at 16 MP).
MAX_JPEG_SCANS = 100
# the first image's marker segments, scans included (a photo has about 20; an ICC profile
# split into its most chunks adds 255, an extended XMP packet filling 20 MB about 300)
MAX_JPEG_SEGMENTS = 1_000
# fill and stray bytes between the segments before the first scan: Pillow steps over them one
# at a time (20 MB of fill bytes: 8 s); a photo has none
MAX_JPEG_PADDING = 65_536
# EXIF (APP1) and Photoshop (APP13) segments before the first scan: Pillow joins the EXIF ones
# into one block a segment at a time, a copy of all so far each (300 segments: +390 MB), and
# reads a Photoshop segment's resource blocks one by one (300 full segments: 0.8 s alone).
# A photo has one of each at most; Photoshop may split a large one over a few.
MAX_JPEG_METADATA_SEGMENTS = 16
_JPEG_METADATA = {0xE1: b"Exif\x00\x00", 0xED: b"Photoshop 3.0\x00"}
# chunks in all (a 20 MB PNG written in 8 KB IDAT chunks, libpng's default, has about 2,500)
MAX_PNG_CHUNKS = 50_000
# the compressed ICC profile and text chunks, each of which Pillow inflates up to its
# MAX_TEXT_CHUNK (1 MB, 2.4 ms) on reading. Its MAX_TEXT_MEMORY (64 MB) counts only text it
# keeps: not a profile, text without a key or text that is not UTF-8, so a 2 MB PNG of 2,000
# such kilobyte chunks cost 4.9 s (a photo has an ICC profile and a few text chunks)
MAX_PNG_COMPRESSED_CHUNKS = 16
_PNG_COMPRESSED_CHUNKS = frozenset({b"iCCP", b"zTXt", b"iTXt"})
# extension sub-blocks and stray bytes before the first picture (a photo has a few)
MAX_GIF_PARTS = 10_000
# entries and numeric values in the directories Pillow reads: the first, and the EXIF and GPS
# directories that exif_transpose() unpacks in full for a rotated photo (a 16 MB one: 4.5 s).
# Most of a real file's are its strip or tile table (a 50 MP image stored a row per strip has
# about 14,000, offsets and sizes)
MAX_TIFF_VALUES = 50_000

# the marker a decoder resynchronises to: the last 0xFF of a run, followed by a marker code
# (not a stuffed 0x00). One byte of lookahead keeps the search linear on a run of fill bytes.
_MARKER = re.compile(rb"\xff(?=[^\x00\xff])")
# the marker that ends a scan's entropy-coded data: as above, less the restart markers in it
_SCAN_END = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0-7, SOI
_GIF_BLOCK = re.compile(rb"[!,;]")  # extension, image descriptor, trailer
# TIFF field types that Pillow unpacks into a tuple of numbers, one object per value
_TIFF_NUMERIC_TYPES = frozenset({3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16, 17, 18})
_TIFF_SUB_DIRECTORIES = frozenset({0x8769, 0x8825, 0xA005})  # EXIF, GPS, interoperability
_TIFF_OFFSET_SIZES = {3: 2, 4: 4, 13: 4, 16: 8, 18: 8}  # SHORT, LONG, IFD, LONG8, IFD8


class JpegParts(NamedTuple):
    """What jpeg_parts() counts in the first image of a JPEG."""

    segments: int
    scans: int
    padding: int  # bytes before the first scan
    metadata: int  # EXIF and Photoshop segments before the first scan


def jpeg_parts(data: bytes) -> JpegParts:
    """The marker segments, scans, padding bytes and metadata segments before the first scan,
    of the first image of a JPEG, read from its markers (each count stops just past its cap)."""
    segments = scans = padding = metadata = 0
    position = 2
    while (
        segments <= MAX_JPEG_SEGMENTS
        and scans <= MAX_JPEG_SCANS
        and metadata <= MAX_JPEG_METADATA_SEGMENTS
    ):
        if scans == 0:  # after the first scan, libjpeg skips padding in C
            # search no further than the padding left, so a run of fill bytes is never read
            window = position + MAX_JPEG_PADDING - padding + 2
            found = _MARKER.search(data, position, window)
            if found is None and window < len(data):
                return JpegParts(segments, scans, MAX_JPEG_PADDING + 1, metadata)
            if found is not None:
                padding += found.start() - position
        else:
            found = _MARKER.search(data, position)
        if found is None:
            break
        marker, position = data[found.start() + 1], found.start() + 2
        segments += 1
        if marker == 0xD9:  # EOI: later images of an MPO are not decoded
            break
        if marker in _STANDALONE_MARKERS:
            continue
        if scans == 0 and marker in _JPEG_METADATA:  # Pillow reads these; libjpeg skips them
            signature = _JPEG_METADATA[marker]
            metadata += data.startswith(signature, position + 2)
        position += int.from_bytes(data[position : position + 2], "big")
        if marker == 0xDA:
            scans += 1
            found = _SCAN_END.search(data, position)
            if found is None:
                break
            position = found.start()
    return JpegParts(segments, scans, padding, metadata)


class PngParts(NamedTuple):
    """What png_parts() counts in a PNG."""

    chunks: int
    compressed: int  # ICC profile and text chunks that Pillow inflates


def png_parts(data: bytes) -> PngParts:
    """The chunks of a PNG up to IEND, and how many of them are compressed metadata (each
    count stops just past its cap)."""
    chunks = compressed = 0
    position, end = 8, len(data)
    while (
        position + 8 <= end and chunks <= MAX_PNG_CHUNKS and compressed <= MAX_PNG_COMPRESSED_CHUNKS
    ):
        kind = data[position + 4 : position + 8]
        chunks += 1
        compressed += kind in _PNG_COMPRESSED_CHUNKS
        if kind == b"IEND":
            break
        position += 12 + int.from_bytes(data[position : position + 4], "big")
    return PngParts(chunks, compressed)


def gif_parts(data: bytes) -> int:
    """The extension sub-blocks and stray bytes before a GIF's first picture, as Pillow reads
    them one by one (stops just past MAX_GIF_PARTS)."""
    if len(data) < 13:
        return 0
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # the global colour table
    parts, end = 0, len(data)
    while position < end and parts <= MAX_GIF_PARTS:
        introducer = data[position]
        if introducer == 0x21:  # an extension: its label, then sub-blocks up to an empty one
            position += 2
            while position < end and parts <= MAX_GIF_PARTS:
                size = data[position]
                position += 1 + size
                parts += 1
                if size == 0:
                    break
        elif introducer in (0x2C, 0x3B):  # the first picture, or the trailer
            break
        else:  # stray bytes, which Pillow skips one at a time (searched up to the cap only)
            limit = min(end, position + MAX_GIF_PARTS - parts + 1)
            found = _GIF_BLOCK.search(data, position, limit)
            stop = limit if found is None else found.start()
            parts += stop - position
            position = stop
    return parts


def _tiff_directory(
    data: bytes, start: int, endian: str, big: bool
) -> list[tuple[int, int, int, bytes]]:
    """The entries (tag, type, count, value field) of the TIFF directory at `start`, at most
    one past MAX_TIFF_VALUES of them; none if it lies outside `data`."""
    number, layout = (endian + "Q", endian + "HHQ8s") if big else (endian + "H", endian + "HHI4s")
    if start >= len(data):  # an offset past the end (a BigTIFF's may not even fit a C size)
        return []
    try:
        (entries,) = struct.unpack_from(number, data, start)
    except struct.error:  # too short to hold a directory: Pillow reports the damage
        return []
    start += struct.calcsize(number)
    size = struct.calcsize(layout)
    entries = min(entries, max(len(data) - start, 0) // size, MAX_TIFF_VALUES + 1)
    return list(struct.iter_unpack(layout, data[start : start + entries * size]))


def tiff_values(data: bytes) -> int:
    """The entries and numeric values of a TIFF's (or BigTIFF's) first directory and of the
    EXIF, GPS and interoperability directories it points at, as Pillow unpacks them one by one
    (stops just past MAX_TIFF_VALUES)."""
    endian = "<" if data[:2] == b"II" else ">"
    order: Literal["little", "big"] = "little" if endian == "<" else "big"
    big = data[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 8-byte offsets and counts
    first = data[8:16] if big else data[4:8]
    total, pending, seen = 0, [int.from_bytes(first, order)], set()
    while pending and total <= MAX_TIFF_VALUES:
        start = pending.pop()
        if start in seen:
            continue
        seen.add(start)
        for tag, kind, count, value in _tiff_directory(data, start, endian, big):
            total += max(count, 1) if kind in _TIFF_NUMERIC_TYPES else 1
            if tag in _TIFF_SUB_DIRECTORIES and count == 1:  # the value, left-justified
                size = _TIFF_OFFSET_SIZES.get(kind, len(value))
                pending.append(int.from_bytes(value[:size], order))
    return total


def _counts(data: bytes) -> list[tuple[str, int, int, str]]:
    """For each counted part of `data`'s format: the format, the count, its cap, and what a
    count over the cap means (a phrase with {cap})."""
    if data[:3] == b"\xff\xd8\xff":
        segments, scans, padding, metadata = jpeg_parts(data)
        return [
            ("JPEG", scans, MAX_JPEG_SCANS, "is stored in more than {cap:,} scans (a photo has "
             "about 10)"),
            ("JPEG", segments, MAX_JPEG_SEGMENTS, "is stored in more than {cap:,} marker "
             "segments (a photo has about 20)"),
            ("JPEG", padding, MAX_JPEG_PADDING, "has more than {cap:,} bytes of padding between "
             "its markers (a photo has none)"),
            ("JPEG", metadata, MAX_JPEG_METADATA_SEGMENTS, "holds more than {cap:,} EXIF and "
             "Photoshop segments (a photo has one or two)"),
        ]  # fmt: skip
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        chunks, compressed = png_parts(data)
        return [
            ("PNG", chunks, MAX_PNG_CHUNKS, "is stored in more than {cap:,} chunks (a 20 MB "
             "photo has about 2,500)"),
            ("PNG", compressed, MAX_PNG_COMPRESSED_CHUNKS, "holds more than {cap:,} compressed "
             "profile and text chunks (a photo has a few)"),
        ]  # fmt: skip
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return [("GIF", gif_parts(data), MAX_GIF_PARTS, "has more than {cap:,} extension "
                 "blocks or stray bytes before its picture (a photo has a few)")]  # fmt: skip
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return [("TIFF", tiff_values(data), MAX_TIFF_VALUES, "holds more than {cap:,} tags "
                 "and values in its directories (a photo has a few thousand, most of them its "
                 "strip table)")]  # fmt: skip
    return []


def check_parts(data: bytes) -> None:
    """Refuse an upload whose container has absurdly many parts, before Pillow parses it.

    The format is told by the same first bytes Pillow's plugins test; anything else passes here
    and is left to Pillow. Raises ImageTooComplexError, with a sentence for the user.
    """
    for kind, count, cap, meaning in _counts(data):
        if count > cap:
            raise ImageTooComplexError(
                f"That {kind} {meaning.format(cap=cap)}, which would take too long to decode: "
                f"save it again as an ordinary {kind}."
            )
