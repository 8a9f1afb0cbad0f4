"""Safe decoding of untrusted uploads (NOTES §6).

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

