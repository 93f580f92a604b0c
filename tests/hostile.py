"""A corpus of broken, odd and malicious uploads, generated here so that no binary is checked in.

Each HostileFile says what the app must answer: 200 for odd but valid pictures (they are
classified), 400 for bytes that are not a picture we can decode, 413 for decompression bombs,
415 for real images in formats we refuse.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .imagemaker import encode, make_picture


@dataclass(frozen=True)
class HostileFile:
    """One upload: its bytes, the filename and Content-Type a client claims, the status due."""

    name: str
    data: bytes
    status: int
    filename: str = "upload.jpg"
    content_type: str = "image/jpeg"
    label: str | None = None  # the class a 200 must answer, when the picture still shows one


def picture(label: str = "mod", size: tuple[int, int] = (64, 64), seed: int = 7) -> Image.Image:
    """A picture of class `label` (see imagemaker: where the red and blue bands are)."""
    return make_picture(label, np.random.default_rng(seed), size)


# --- hand-made containers (Pillow refuses to write these broken or extreme shapes) ---------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(
    width: int, height: int, bit_depth: int, colour_type: int, rows: bytes, extra: bytes = b""
) -> bytes:
    """A PNG from raw scanlines (each already starting with its filter byte)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + extra
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def sixteen_bit_rgb_png(image: Image.Image) -> bytes:
    """`image` as a 48-bit (16 bits per channel) RGB PNG."""
    pixels = np.asarray(image.convert("RGB")).astype(">u2") * 257
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return png(image.width, image.height, 16, 2, rows)


def png_bomb(width: int, height: int) -> bytes:
    """A PNG header claiming `width`x`height` 1-bit pixels, followed by a few real rows."""
    rows = (b"\x00" + bytes((width + 7) // 8)) * 4
    return png(width, height, 1, 0, rows)


@functools.cache
def full_png_bomb(side: int) -> bytes:
    """A complete, valid 1-bit PNG of side x side white pixels: 46 KB for 169 MP at 13000."""
    return png(side, side, 1, 0, (b"\x00" + b"\xff" * ((side + 7) // 8)) * side)


def gif_bomb(width: int, height: int) -> bytes:
    """A valid small GIF whose logical screen and frame claim `width`x`height`."""
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    frame = data.index(b"\x2c")  # image descriptor: left, top, width, height
    data[frame + 5 : frame + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims `width`x`height`."""
    data = bytearray(encode(Image.new("RGB", (16, 16)), "JPEG"))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def ycck_jpeg(image: Image.Image) -> bytes:
    """`image` as a YCCK JPEG (Adobe transform 2), the way Photoshop writes CMYK JPEGs.

    Pillow only writes plain CMYK, so the YCC channels are computed here and the Adobe marker's
    transform byte is set to 2; libjpeg then converts YCCK back to CMYK on decoding.
    """
    cmyk = np.asarray(image.convert("CMYK"))
    ycc = np.asarray(Image.fromarray(np.ascontiguousarray(cmyk[..., :3])).convert("YCbCr"))
    # Pillow stores Adobe CMYK inverted, so the channels go in inverted to come out right
    channels = np.dstack([255 - ycc, cmyk[..., 3]]).astype(np.uint8)
    data = bytearray(encode(Image.fromarray(channels, "CMYK"), "JPEG", quality=95))
    adobe = data.index(b"\xff\xee")
    data[adobe + 15] = 2  # marker, length, "Adobe", version, flags0, flags1, then transform
    return bytes(data)


def jpeg_with_app1(image: Image.Image, payload: bytes) -> bytes:
    """A JPEG carrying `payload` as its APP1 (EXIF) segment, right after SOI."""
    data = encode(image, "JPEG", quality=90)
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + segment + data[2:]


def corrupt_exif_payloads() -> dict[str, bytes]:
    """APP1 payloads that claim to be EXIF and are broken in different ways."""
    ifd_out_of_range = b"Exif\x00\x00II*\x00" + struct.pack("<I", 0xFFFFFF00)
    # one entry, Orientation (0x0112), type SHORT, count 1, value 9: no such orientation
    bad_orientation = (
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00"
        + struct.pack("<HHIHH", 0x0112, 3, 1, 9, 0)
        + b"\x00\x00\x00\x00"
    )
    # 0xFFFF entries announced, none present
    entries_missing = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff"
    # Orientation stored as a 4 GiB-long ASCII string at an offset past the end
    huge_count = (
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00"
        + struct.pack("<HHII", 0x0112, 2, 0xFFFFFFFF, 0x7FFFFFFF)
        + b"\x00\x00\x00\x00"
    )
    return {
        "exif-ifd-offset-out-of-range": ifd_out_of_range,
        "exif-orientation-9": bad_orientation,
        "exif-entries-missing": entries_missing,
        "exif-huge-count": huge_count,
        "exif-garbage": b"Exif\x00\x00" + bytes(range(256)) * 4,
        "exif-header-only": b"Exif\x00\x00",
    }


def zip_archive() -> bytes:
    """A ZIP file holding a picture, as if someone uploaded an album."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.png", encode(picture(), "PNG"))
    return buffer.getvalue()


def gif_html_polyglot() -> bytes:
    """A valid GIF that is also an HTML page with a script (the GIFAR family of attacks).

    The HTML sits in a GIF comment block; a browser that sniffs it as HTML runs the script.
    """
    html = b"<html><body><script>alert(document.domain)</script></body></html>"
    return encode(picture("rocker", (32, 32)).convert("P"), "GIF", comment=html)


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(1)</script><rect width="10" height="10"/></svg>'
)
HTML = b"<!doctype html><html><body><script>alert(1)</script><img src=x onerror=alert(2)>"
EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    b"(%pipe%id) (w) file\nshowpage\n%%EOF\n"
)  # would run `id` if Ghostscript rendered it


def animated(format: str, **options) -> bytes:
    """A three-frame animation (mod, rocker, mod): the first frame is the one classified."""
    frames = [picture(label, (48, 48), seed) for seed, label in enumerate(("mod", "rocker", "mod"))]
    return encode(
        frames[0], format, save_all=True, append_images=frames[1:], duration=100, loop=0, **options
    )


def hostile_files() -> list[HostileFile]:
    """The whole corpus, in a fixed order."""
    mod, rocker = picture("mod"), picture("rocker")
    jpeg = encode(mod, "JPEG", quality=90)
    png_bytes = encode(rocker, "PNG")
    files = [
        # damaged files
        HostileFile("truncated-jpeg", jpeg[: len(jpeg) // 3], 400),
        HostileFile("truncated-jpeg-header", jpeg[:40], 400),
        HostileFile(
            "truncated-png", png_bytes[: len(png_bytes) // 2], 400, "photo.png", "image/png"
        ),
        HostileFile("truncated-png-signature", png_bytes[:8], 400, "photo.png", "image/png"),
        HostileFile(
            "png-bad-crc",
            png_bytes[:30] + bytes([png_bytes[30] ^ 0xFF]) + png_bytes[31:],
            400,
            "photo.png",
            "image/png",
        ),
        HostileFile("jpeg-garbage-after-soi", b"\xff\xd8" + bytes(range(256)) * 8, 400),
        # odd but valid pictures: classified
        HostileFile("cmyk-jpeg", encode(mod.convert("CMYK"), "JPEG", quality=95), 200, label="mod"),
        HostileFile("ycck-jpeg", ycck_jpeg(rocker), 200, label="rocker"),
        HostileFile("progressive-jpeg", encode(mod, "JPEG", progressive=True), 200, label="mod"),
        HostileFile(
            "16-bit-grey-png",
            encode(Image.fromarray(np.asarray(rocker.convert("L")).astype(np.uint16) * 257), "PNG"),
            200,
            "grey.png",
            "image/png",
        ),
        HostileFile(
            "16-bit-rgb-png", sixteen_bit_rgb_png(mod), 200, "deep.png", "image/png", label="mod"
        ),
        HostileFile(
            "palette-png-with-transparency",
            encode(rocker.convert("P"), "PNG", transparency=0),
            200,
            "p.png",
            "image/png",
            label="rocker",
        ),
        HostileFile(
            "rgba-png-fully-transparent",
            encode(Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "PNG"),
            200,
            "a.png",
            "image/png",
        ),
        HostileFile("animated-gif", animated("GIF"), 200, "anim.gif", "image/gif", label="mod"),
        HostileFile("animated-webp", animated("WEBP"), 200, "anim.webp", "image/webp", label="mod"),
        HostileFile("animated-png", animated("PNG"), 200, "anim.png", "image/png", label="mod"),
        HostileFile(
            "1x1", encode(Image.new("RGB", (1, 1), "red"), "PNG"), 200, "dot.png", "image/png"
        ),
        HostileFile(
            "20000x1",
            encode(Image.new("RGB", (20000, 1), "blue"), "PNG"),
            200,
            "line.png",
            "image/png",
        ),
        HostileFile(
            "1x20000",
            encode(Image.new("RGB", (1, 20000), "blue"), "PNG"),
            200,
            "column.png",
            "image/png",
        ),
        HostileFile(
            "gif-html-polyglot", gif_html_polyglot(), 200, "page.html", "text/html", label="rocker"
        ),
        # decompression bombs: a small file that decodes to an enormous picture
        HostileFile(
            "png-bomb-144-megapixels",
            encode(Image.new("1", (12000, 12000)), "PNG"),
            413,
            "bomb.png",
            "image/png",
        ),
        HostileFile(
            "png-bomb-header-4-gigapixels", png_bomb(65535, 65535), 413, "bomb.png", "image/png"
        ),
        HostileFile("gif-bomb", gif_bomb(65535, 65535), 413, "bomb.gif", "image/gif"),
        HostileFile("jpeg-bomb", jpeg_bomb(65500, 65500), 413),
        # not pictures at all, or pictures in formats we refuse
        HostileFile("zero-bytes", b"", 400),
        HostileFile("text-renamed-jpg", b"Dear diary, today I went to Brighton.\n" * 20, 400),
        HostileFile("html-renamed-jpg", HTML, 400),
        HostileFile("svg-renamed-jpg", SVG, 400),
        HostileFile("svg-as-svg", SVG, 400, "drawing.svg", "image/svg+xml"),
        HostileFile("zip", zip_archive(), 400, "album.zip", "application/zip"),
        HostileFile("eps-with-pipe", EPS, 415, "poster.eps", "application/postscript"),
        HostileFile("ico", encode(mod, "ICO"), 415, "favicon.ico", "image/x-icon"),
        HostileFile("nul-bytes", bytes(4096), 400),
        # hostile names on a good picture: the name must never matter
        HostileFile(
            "path-traversal-name", png_bytes, 200, "../../etc/passwd", "image/png", label="rocker"
        ),
        HostileFile(
            "windows-path-name",
            png_bytes,
            200,
            "..\\..\\windows\\win.ini",
            "image/png",
            label="rocker",
        ),
        HostileFile(
            "absolute-path-name", png_bytes, 200, "/etc/shadow", "image/png", label="rocker"
        ),
        HostileFile("unicode-name", jpeg, 200, "фото Брайтон 📷 ملف.jpg", label="mod"),
        HostileFile("right-to-left-override-name", jpeg, 200, "photo\u202egpj.exe", label="mod"),
        HostileFile("very-long-name", jpeg, 200, "a" * 5000 + ".jpg", label="mod"),
        HostileFile("html-in-name", jpeg, 200, "<img src=x onerror=alert(1)>.jpg", label="mod"),
        HostileFile("nul-in-name", jpeg, 200, "photo\x00.php.jpg", label="mod"),
    ]
    files += [
        HostileFile(name, jpeg_with_app1(mod, payload), 200, label="mod")
        for name, payload in corrupt_exif_payloads().items()
    ]
    return files
