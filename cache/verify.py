"""Near-duplicate verifier: decides whether a pHash candidate really shows the same content.

A 64-bit pHash is a layout hash for documents: changing one character leaves it unchanged
(NOTES §2). pHash therefore only *finds* candidates; this module decides. The rule:

1. Each stored result keeps a greyscale signature image (`<key>/signature.png`, `make_signature`):
   the page at its own resolution, downscaled only when wider than `MAX_WIDTH`.
2. Aspect ratios must agree (±2%, or 2 px for small images), else reject: a crop or another page
   is never the same content.
3. The stored signature is resampled to exactly the upload's size (the upload capped at
   `MAX_WIDTH`): resampling the *upload* instead, or to a rounded common size, adds a second
   resampling or a 1-px stretch that scores like a changed glyph on small text. Both are blurred
   with a Gaussian of `SIGMA` px (absorbs resampling phase and JPEG ringing) and compared pixel
   by pixel: score = max |a - b| (0..255).
4. Same content iff score <= `THRESHOLD`.

Why not a 9×9 box average of |a - b| (NOTES §2, measured on 22 px text): on 11-13 px text a
changed dot or tail (`i` → `l`, `.` → `,`, `:` → `;`) averages away to 3-9 grey levels while a
±15% resize of the same page scores up to 78. A small blur with no box keeps a changed glyph at
full strength.

Measured on the generated corpus (tests/unit/cache/corpus.py, seeds 11 and 2026: 300
one-character pairs, DejaVu/Liberation/Noto CJK/WenQuanYi at 11-30 px, widths 480-1600 px; each
changed page also re-encoded and resized = 1,500 comparisons): every one-character change scores
>= 27.3 (worst: `.` → `,` at 13 px, resized ×0.87 + JPEG q75); 2,100 re-encodings (JPEG q70-95,
PNG, WebP q90), resizes ±15% (+JPEG q75) and EXIF changes of the same pages score <= 18.3.
`THRESHOLD` = 21 sits between them, nearer the re-encode side: a false reject only costs one
inference, a false accept would serve the wrong text. tests/unit/cache/test_verify.py re-checks
both sides with margins on every run.

Not handled (rejected, so they cost a MISS, never a wrong HIT): crops, rotations, perspective,
brightness or contrast changes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MAX_WIDTH = 2000  # signatures of wider pages are downscaled: bounded storage and compare cost
SIGMA = 0.7
THRESHOLD = 21.0
ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class Verdict:
    same: bool
    score: float  # max absolute difference after the blur, 0..255; inf when shapes disagree
    reason: str


def make_signature(image: Image.Image) -> Image.Image:
    """Greyscale signature of a decoded (RGB, EXIF-transposed) image."""
    grey = image.convert("L")
    w, h = grey.size
    if w <= MAX_WIDTH:
        return grey
    return grey.resize((MAX_WIDTH, max(1, round(h * MAX_WIDTH / w))), Image.Resampling.LANCZOS)


def encode_signature(signature: Image.Image) -> bytes:
    buf = io.BytesIO()
    signature.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_signature(data: bytes) -> Image.Image:
    """Decode a stored signature PNG (our own output, so only PNG is accepted)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
        img.load()
        return img.convert("L")


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    if img.size == size:
        return img
    down = size[0] < img.size[0]
    return img.resize(size, Image.Resampling.LANCZOS if down else Image.Resampling.BICUBIC)


def _blurred(img: Image.Image) -> np.ndarray:
    # H x W uint8 -> float32, blurred so that sub-pixel sampling differences vanish
    return cv2.GaussianBlur(np.asarray(img, dtype=np.float32), (0, 0), SIGMA)


def compare(upload: Image.Image, stored_signature: Image.Image, *, threshold: float = THRESHOLD) -> Verdict:
    """Compare an upload (decoded, EXIF-transposed) with a stored signature."""
    sw, sh = stored_signature.size
    uw, uh = upload.size
    if abs(uh * sw / uw - sh) > max(2.0, ASPECT_TOLERANCE * sh):
        return Verdict(False, float("inf"), "aspect ratio differs")
    grey = upload.convert("L")
    if uw > MAX_WIDTH:
        grey = _resize(grey, (MAX_WIDTH, max(1, round(uh * MAX_WIDTH / uw))))
    a = _blurred(grey)
    b = _blurred(_resize(stored_signature, grey.size))
    score = float(np.abs(a - b).max())
    same = score <= threshold
    return Verdict(same, score, "within threshold" if same else "local difference above threshold")
