"""Seed images in every accepted format and a byte-level mutator, for the upload fuzz test
(tests/unit/origin/test_fuzz.py) and its longer run (bench/fuzz_bench.py).

Seeds are synthesised here (never downloaded): small images in several modes per format, JPEGs
with EXIF (every orientation, mistyped tags), TIFFs with several compressions and IFD layouts,
animated GIFs, lossy and lossless WebP, BMPs, PDFs (Pillow's and a hand-written one with text),
and the hand-built hostile files of crafted.py.
Mutations are what breaks parsers: bit flips, boundary integers written over header fields,
truncation, inserted, deleted and duplicated spans, and splices of two seeds.
"""
from __future__ import annotations

import io
import random
import struct

from PIL import Image, ImageDraw

from . import crafted


def _img(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        draw.rectangle((x0, y0, x0 + rng.randrange(1, 12), y0 + rng.randrange(1, 6)),
                       fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return img.convert(mode)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _exif(orientation: int, extra: list[tuple[int, int, int, bytes]]) -> bytes:
    return b"Exif\x00\x00" + crafted.tiff_block([(0x0112, 3, 1, struct.pack("<H", orientation)), *extra])


def seeds() -> list[bytes]:
    """Valid (and a few crafted hostile) files of every accepted format, 8x8 to 64x40 pixels."""
    out: list[bytes] = []
    sizes = [(8, 8), (33, 17), (64, 40)]
    for i, size in enumerate(sizes):
        for mode in ("RGB", "L", "RGBA", "P", "1"):
            out.append(_save(_img(mode, size, i), "PNG"))
        for mode in ("RGB", "L", "CMYK"):
            out.append(_save(_img(mode, size, i), "JPEG", quality=70))
        out.append(_save(_img("RGB", size, i), "JPEG", progressive=True))
        for orientation in range(1, 9):
            extra = [] if orientation % 2 else [(0x010F, 2, 4, b"cam\x00"), (0x0110, 11, 1, struct.pack("<f", 2.0))]
            out.append(_save(_img("RGB", size, orientation), "JPEG", exif=_exif(orientation, extra)))
        for compression in ("raw", "tiff_lzw", "packbits", "tiff_adobe_deflate"):
            out.append(_save(_img("RGB", size, i), "TIFF", compression=compression))
        out.append(_save(_img("L", size, i), "TIFF"))
        frames = [_img("P", size, i + k) for k in range(3)]
        out.append(_save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0))
        out.append(_save(_img("RGB", size, i), "WEBP", quality=60))
        out.append(_save(_img("RGBA", size, i), "WEBP", lossless=True))
        out.append(_save(_img("RGB", size, i), "BMP"))
        out.append(_save(_img("P", size, i), "BMP"))
    out.extend(pdf_seeds())
    out.append(crafted.jpeg_orientation_float_model())
    out.append(crafted.tiff_rational_strip_offsets())
    out += [crafted.jpeg_claiming(6000, 600), crafted.gif_claiming(6000, 600)]  # headers that lie
    return out


def text_pdf(text: str, width: int = 200, height: int = 60) -> bytes:
    """A one-page PDF drawing `text` in Helvetica, objects and xref table written by hand."""
    stream = f"BT /F1 14 Tf 10 {height // 2} Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] /Contents 4 0 R "
               f"/Resources << /Font << /F1 5 0 R >> >> >>".encode(),
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pdf_seeds() -> list[bytes]:
    """PDFs (uploads since the queue): image pages written by Pillow (one and several pages,
    RGB, grey, bilevel) and a hand-written page of text (a font, a content stream, an xref)."""
    out = [_save(_img(mode, (64, 40), 7), "PDF", resolution=72) for mode in ("RGB", "L", "1")]
    pages = [_img("RGB", (48, 32), 8 + k) for k in range(3)]
    out.append(_save(pages[0], "PDF", save_all=True, append_images=pages[1:], resolution=96))
    out.append(text_pdf("Invoice 2026-0042 Total 1,234.56"))
    return out


BOUNDARY = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    """One input: a seed with 0-4 mutations (a few inputs stay valid on purpose)."""
    data = bytearray(rng.choice(corpus))
    for _ in range(rng.choice((0, 1, 1, 2, 3, 4))):
        if not data:
            break
        pos = rng.randrange(len(data))
        # headers are where sizes and offsets live: aim there most of the time
        if rng.random() < 0.6:
            pos = min(pos, rng.randrange(min(len(data), 256)))
        op = rng.randrange(8)
        if op == 0:
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos] = rng.randrange(256)
        elif op == 2:
            value = rng.choice(BOUNDARY)
            width, fmt = rng.choice(((2, "<H"), (2, ">H"), (4, "<I"), (4, ">I")))
            data[pos:pos + width] = struct.pack(fmt, value & (0xFFFF if width == 2 else 0xFFFFFFFF))
        elif op == 3:
            del data[pos:]
        elif op == 4:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
        elif op == 5:
            del data[pos:pos + rng.randrange(1, 64)]
        elif op == 6:
            span = data[pos:pos + rng.randrange(1, 128)]
            data[pos:pos] = span * rng.randrange(1, 4)
        else:
            other = rng.choice(corpus)
            data = data[:pos] + other[rng.randrange(len(other)):]
    return bytes(data)
