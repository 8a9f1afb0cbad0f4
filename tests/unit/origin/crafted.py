"""Hand-built hostile images: valid containers whose tags have the wrong types (issue 16 item 2)."""
from __future__ import annotations

import io
import struct

from PIL import Image


def tiff_block(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian TIFF header and one IFD; entries are (tag, type, count, payload)."""
    n = len(entries)
    data_off = 8 + 2 + n * 12 + 4
    ifd, extra = struct.pack("<H", n), b""
    for tag, typ, count, payload in entries:
        if len(payload) <= 4:
            ifd += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, typ, count, data_off + len(extra))
            extra += payload
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + extra


def jpeg_orientation_float_model() -> bytes:
    """JPEG whose EXIF says Orientation=6 and has a `Model` tag typed FLOAT: Pillow's
    exif_transpose raised AttributeError."""
    exif = tiff_block([(0x0110, 11, 1, struct.pack("<f", 1.5)), (0x0112, 3, 1, struct.pack("<H", 6))])
    buf = io.BytesIO()
    Image.new("RGB", (16, 8), "white").save(buf, "JPEG", exif=b"Exif\x00\x00" + exif)
    return buf.getvalue()


def tiff_rational_strip_offsets() -> bytes:
    """4x4 greyscale TIFF whose StripOffsets is typed RATIONAL: Pillow raised TypeError."""
    pixels = b"\x80" * 16
    short = lambda v: struct.pack("<H", v)  # noqa: E731
    block = tiff_block([(256, 3, 1, short(4)), (257, 3, 1, short(4)), (258, 3, 1, short(8)),
                        (259, 3, 1, short(1)), (262, 3, 1, short(1)), (273, 5, 1, struct.pack("<II", 200, 1)),
                        (277, 3, 1, short(1)), (278, 3, 1, short(4)), (279, 4, 1, struct.pack("<I", 16))])
    return block.ljust(200, b"\0") + pixels


def _small_page() -> Image.Image:
    img = Image.new("RGB", (600, 80), "white")
    img.paste((0, 0, 0), (20, 30, 580, 50))  # one dark bar: some ink to code
    return img


def jpeg_claiming(width: int, height: int, *, progressive: bool = False) -> bytes:
    """A complete small JPEG whose frame header was rewritten to say width x height (issue 16
    item 5): libjpeg decodes what is there and fills the rest, with a warning only."""
    buf = io.BytesIO()
    _small_page().save(buf, "JPEG", quality=75, progressive=progressive)
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A small GIF whose screen and frame were rewritten to say width x height: Pillow decodes
    the frame's data and pads the rest with the background."""
    buf = io.BytesIO()
    _small_page().save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", width, height)      # logical screen
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # after the global colour table
    while data[pos] == 0x21:  # extensions: label, then sub-blocks up to an empty one
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C  # the first image descriptor
    data[pos + 5:pos + 9] = struct.pack("<HH", width, height)
    return bytes(data)
