"""Decoding image files for the CLI and the evaluator (the origin has its own, stricter decoder)."""
from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

# Far above any page we read, far below what would exhaust memory.
MAX_PIXELS = 60_000_000


class ImageLoadError(ValueError):
    """The bytes are not an image we can read."""


# Mean grey level of the opaque pixels above which they are taken for light ink (composited on black).
LIGHT_INK = 160


def _backdrop(grey: Image.Image, alpha: Image.Image) -> tuple[int, int, int]:
    import numpy as np

    g, a = np.asarray(grey), np.asarray(alpha)
    opaque = a > 127
    # Fully opaque images have no backdrop to choose; mostly transparent ones are judged on their ink.
    if opaque.all() or not opaque.any():
        return (255, 255, 255)
    return (0, 0, 0) if float(g[opaque].mean()) > LIGHT_INK else (255, 255, 255)


def load_image(data: bytes) -> Image.Image:
    """Bytes → RGB PIL image, EXIF orientation applied, transparency flattened on white."""
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ImageLoadError(f"{img.width}x{img.height} pixels is more than {MAX_PIXELS}")
        img.load()
        img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageLoadError):
            raise
        raise ImageLoadError(f"not a readable image: {exc}") from exc
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency composited on white (what a viewer shows on a white page), or on
    black when what is opaque is mostly light: white text on a transparent background (a logo, a
    watermark, a caption layer) would vanish on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        background = Image.new("RGB", rgba.size, _backdrop(rgba.convert("L"), alpha))
        background.paste(rgba, mask=alpha)
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bit rather than clip
        img = img.point(lambda v: v / 256).convert("L") if img.mode.startswith("I;16") else img.convert("L")
    return img.convert("RGB")
