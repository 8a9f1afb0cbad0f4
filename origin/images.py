"""Safe decoding of untrusted uploads (docs/facts.md §1).

Only the formats we accept are tried, the pixel limit is ours (Pillow's only warns below 2×89 MP),
a DecompressionBombWarning is an error, and every decoding failure becomes a 4xx.
"""
from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from struct import error as struct_error  # Pillow raises it on some short headers
from typing import Callable

from PIL import Image, ImageOps, UnidentifiedImageError

from ocr_core.images import to_rgb

from .errors import CorruptImage, EmptyUpload, ImageTooLarge, OriginError, UnsupportedImage
from .units import human_pixels

logger = logging.getLogger(__name__)

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
CONTENT_TYPES = {
    "image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/webp", "image/bmp",
    "image/x-ms-bmp", "image/tiff", "image/gif",
}


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied, alpha flattened on white
    format: str


def decode_image(data: bytes, *, max_pixels: int, charge: Callable[[int], None] | None = None) -> DecodedImage:
    """Decode upload bytes into a normalised RGB image or raise a 4xx OriginError.

    `charge(pixels)` is called with the size the header announces, after the pixel limit and
    before any pixel is decoded: the caller's budget (origin/limits.py) may refuse it."""
    if not data:
        raise EmptyUpload()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(FORMATS))
            w, h = img.size
            if w <= 0 or h <= 0:
                raise CorruptImage("the image has no pixels")
            if w * h > max_pixels:
                raise ImageTooLarge(f"the image is {w}×{h} pixels ({human_pixels(w * h)}); the limit is "
                                    f"{human_pixels(max_pixels)}")
            _refuse_lying_header(img, data)
            if charge is not None:
                charge(w * h)
            img.load()  # first frame of GIF/TIFF; raises OSError when truncated
            fmt = img.format or "unknown"
            rgb = to_rgb(ImageOps.exif_transpose(img))
    except UnidentifiedImageError as exc:
        raise UnsupportedImage() from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image has more pixels than the limit of {human_pixels(max_pixels)}") from exc
    except OriginError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error) as exc:
        # Pillow reports truncated/corrupt data through these (SyntaxError: broken headers)
        raise CorruptImage(f"the image could not be decoded: {exc.__class__.__name__}") from exc
    except Exception as exc:  # noqa: BLE001 - any other decoder failure is still the image's fault
        # Pillow's plugins also raise TypeError/AttributeError/KeyError/ZeroDivisionError/... on
        # mistyped EXIF or TIFF tags (Orientation + a FLOAT `Model`; RATIONAL StripOffsets): the
        # upload is bad, never the server.
        logger.warning("decoder raised %s on an upload: %s", exc.__class__.__name__, exc)
        raise CorruptImage(f"the image could not be decoded: {exc.__class__.__name__}") from exc
    return DecodedImage(rgb, fmt)


# JPEG start-of-frame markers whose scans are Huffman-coded (baseline, extended, progressive).
# Arithmetic coding (0xC9-0xCB) can code a flat block in a fraction of a bit, so it has no floor.
_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _jpeg_frame(data: bytes) -> tuple[int, int] | None:
    """(marker, offset) of the JPEG's start-of-frame, walking the marker segments; None when
    the walk fails (Pillow has parsed the header already: it is the authority on bad files)."""
    i = 2  # after SOI
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # not DHT, JPG, DAC
            return marker, i
        if marker == 0xDA:  # start of scan before any frame
            return None
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _refuse_lying_header(img: Image.Image, data: bytes) -> None:
    """Refuse, before decoding, a file too short for the pixels its header announces (issue 16
    item 5): a 2 KB JPEG or a 1 KB GIF whose header says 65000×600 decoded to 39 MP in 0.2-0.3 s,
    the data that was missing filled in (a premature end is only a warning to libjpeg, and a GIF
    frame smaller than its screen is padded with the background), and paid again by the worker.

    The floors are what any complete file of that size needs, far below what real files hold:
    * Huffman-coded JPEG: every 8×8 block of every component starts with a Huffman-coded DC
      difference, at least one bit long (ITU-T T.81 F.1.2.1, G.1.2.1), so at least one bit per
      block of the largest component after the frame header (a flat 6500×6000 page, grey,
      progressive, quality 10: 229 KB against a floor of 76 KB). Arithmetic coding has no floor.
    * GIF: an LZW code is at least 2 bits and stands for at most 4,096 pixels (its table size).
    PNG, TIFF and BMP decoders stop at the end of their data (an error, bounded by the bytes
    sent); WebP's fail after allocating (0.1 s for 39 MP); a real image that compresses very well
    (a flat lossless WebP: 39 MP in 13 KB) is honest: those are bounded by the pixel limit and the
    client's budget (origin/limits.py), charged right after this check."""
    w, h = img.size
    floor_bits = 0
    layers = getattr(img, "layer", None)  # JpegImageFile: (id, h, v, table) per component
    if img.format in ("JPEG", "MPO") and layers:
        frame = _jpeg_frame(data)
        if frame is None or frame[0] not in _HUFFMAN_SOF:
            return
        h_max = max(layer[1] for layer in layers) or 1
        v_max = max(layer[2] for layer in layers) or 1
        floor_bits = max(_ceil_div(_ceil_div(w * layer[1], h_max), 8) * _ceil_div(_ceil_div(h * layer[2], v_max), 8)
                         for layer in layers)  # a component's size follows its sampling factors (T.81 A.1.1)
        available = len(data) - frame[1]
    elif img.format == "GIF":
        floor_bits = w * h * 2 // 4096
        available = len(data)
    if floor_bits and available * 8 < floor_bits:
        raise CorruptImage(f"the {img.format} file is {len(data)} bytes, too few for the {w}×{h} pixels its "
                           f"header announces (at least {floor_bits // 8} bytes): a truncated or altered file")
