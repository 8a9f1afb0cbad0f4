"""Near-duplicate verifier: decides whether a pHash candidate really shows the same content.

A 64-bit pHash is a layout hash for documents: changing one character leaves it unchanged
(docs/facts.md §2). pHash therefore only *finds* candidates; this module decides. The rule, in order
(the first that fails rejects, and a rejection only costs one recognition):

1. Each stored result keeps a greyscale signature image (`<key>/signature.png`, `make_signature`)
   at the page's own resolution. Pages over `MAX_PIXELS` get none: they are reused only when
   pixel-identical (exact key), because comparing them at a lower resolution shrinks their text
   below what this check can see (measured: a 3,840 px wide page with 12 px text compared at
   2,000 px let `.` → `,` through with a score of 15).
2. Aspect ratios must agree (±2%, or 2 px for small images): a crop or another page is never the
   same content.
3. Scale: the upload must be within `SCALE_RANGE` (0.8-1.25×) of the stored page. ±15% is what
   must be reused; a much smaller copy has too few pixels per glyph (measured: a one-character
   change uploaded at half size scored 18.5, under the threshold).
4. The stored signature is resampled to exactly the upload's size (resampling the upload instead
   adds a second resampling that scores like a changed glyph on small text). Both are blurred with
   a Gaussian of `SIGMA` px (absorbs resampling phase and JPEG ringing) and compared pixel by
   pixel: score = max |a - b| in grey levels (0..255).
5. Faint content: where either image has ink (local contrast >= `INK_NOISE` after the blur) whose
   15 px neighbourhood never reaches `FAINT_CONTRAST`, a changed glyph can score below the
   threshold (light grey #c8c8c8 text: 16-18; #787878 at 8 px: 13-21). Such pages are reused only
   when pixel-identical. The check is per page, not per region: a change hides in the faintest
   ink, and the local contrast where a thin stroke changed does not tell how thin it was.
6. Same content iff score <= `THRESHOLD`.

Measured on the generated corpus (tests/unit/cache/corpus.py), verifier as written here:
* Black text, seeds 11 + 2026: 300 one-character pairs (DejaVu, Liberation, Noto CJK, WenQuanYi;
  11-30 px; 480-1,600 px wide), each changed page also re-encoded and resized (1,500
  comparisons): every change scores >= 33 (worst: 11 px, resized ×0.85). 2,100 re-encodings
  (JPEG q70-95, PNG, WebP q90), resizes ±15% (+JPEG q75) and EXIF changes of the same pages: all
  pass, <= 19. `THRESHOLD` = 21 sits between them, nearer the re-encode side: a false reject
  costs one inference, a false accept would serve the wrong text.
* Black text at 8-10 px: changes >= 24, re-encodings <= 18 (768 comparisons). At 7 px some
  pages count as faint; the others' changes score >= 22.
* Grey and coloured ink (9 inks, luma contrast 30-235; 3,360 comparisons): no change passed. The
  weakest change that passed the faint check scored 24 (#5a5a5a, 13 px). `FAINT_CONTRAST` = 80:
  on 650 further pairs of mixed inks at 8-30 px, every change that would have passed (<= 21) came
  from a page whose faintest ink measured <= 71, and above 73 no change scored under 23. Black
  text of any size tested is never faint; grey text lighter than about #787878, yellow on white,
  and pages with pale hairlines or pale fills (#e6e6e6 on white; #f0f0f0 is not) are.
tests/unit/cache/test_verify.py re-checks these on other seeds on every run, with margins.

Not handled (rejected, so they cost a MISS, never a wrong HIT): crops, rotations, perspective,
brightness or contrast changes, faint or very large pages, copies outside 0.8-1.25×.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from PIL import Image

MAX_PIXELS = 16_000_000        # larger pages: no signature, exact reuse only (4K screens and 12 MP photos fit)
SIGMA = 0.7
THRESHOLD = 21                 # grey levels
ASPECT_TOLERANCE = 0.02
SCALE_RANGE = (0.8, 1.25)      # upload size / stored size
INK_NOISE = 16                 # local contrast below this is paper texture or codec noise
FAINT_CONTRAST = 80            # ink whose 15 px neighbourhood stays below this is "faint"
_NEAR = np.ones((7, 7), np.uint8)     # local contrast window: a stroke and the paper beside it
_AROUND = np.ones((15, 15), np.uint8)  # "is there strong ink nearby": covers a glyph's halo


@dataclass(frozen=True)
class Verdict:
    same: bool
    score: float  # max absolute difference after the blur, 0..255; inf when not compared
    reason: str


def make_signature(image: Image.Image) -> Image.Image | None:
    """Greyscale signature of a decoded (RGB, EXIF-transposed) image; None when too large."""
    if image.width * image.height > MAX_PIXELS:
        return None
    return image.convert("L")


def can_match(width: int, height: int) -> bool:
    """Whether an upload of this size could match any stored signature (cheap early exit)."""
    return width * height <= MAX_PIXELS * SCALE_RANGE[1] ** 2


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
    # H x W uint8 -> H x W uint8: rounding costs at most 1 grey level of the 6-level margin, and
    # uint8 keeps a 16 MP comparison near 100 MB instead of 400 MB in float32
    return cv2.GaussianBlur(np.asarray(img, dtype=np.uint8), (0, 0), SIGMA)


def faint_ink(blurred: np.ndarray) -> bool:
    """Whether the page has ink too faint for THRESHOLD to see a changed glyph in it."""
    local = cv2.subtract(cv2.dilate(blurred, _NEAR), cv2.erode(blurred, _NEAR))
    strongest_nearby = cv2.dilate(local, _AROUND)
    return bool(np.any((local >= INK_NOISE) & (strongest_nearby < FAINT_CONTRAST)))


class PreparedUpload:
    """An upload's blurred greyscale and faintness, computed once for all its candidates."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image

    @cached_property
    def blurred(self) -> np.ndarray:
        return _blurred(self.image.convert("L"))

    @cached_property
    def faint(self) -> bool:
        return faint_ink(self.blurred)


def compare(upload: Image.Image | PreparedUpload, stored_signature: Image.Image, *,
            threshold: float = THRESHOLD) -> Verdict:
    """Compare an upload (decoded, EXIF-transposed) with a stored signature."""
    prepared = upload if isinstance(upload, PreparedUpload) else PreparedUpload(upload)
    sw, sh = stored_signature.size
    uw, uh = prepared.image.size
    if abs(uh * sw / uw - sh) > max(2.0, ASPECT_TOLERANCE * sh):
        return Verdict(False, float("inf"), "aspect ratio differs")
    if not SCALE_RANGE[0] <= uw / sw <= SCALE_RANGE[1]:
        return Verdict(False, float("inf"), "scale differs")
    if prepared.faint:
        return Verdict(False, float("inf"), "faint content")
    b = _blurred(_resize(stored_signature, (uw, uh)))
    if faint_ink(b):
        return Verdict(False, float("inf"), "faint content")
    score = float(cv2.absdiff(prepared.blurred, b).max())
    same = score <= threshold
    return Verdict(same, score, "within threshold" if same else "local difference above threshold")
