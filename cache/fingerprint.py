"""Content fingerprints of a decoded upload: byte hash, pixel digest and 64-bit pHash."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.fftpack
from PIL import Image

PHASH_BITS = 64
# Bits of the query's pHash that the near-duplicate lookup ignores: those whose DCT coefficient
# lies nearest the median. On sparse pages (small text on a wide white page) a JPEG re-save or a
# resize flips such pairs of bits and moves the pHash by 6; ignoring the query's 4 least stable
# bits finds all 2,100 re-encodings/resizes of the generated corpus within d = 4 (6 were missed).
UNSTABLE_BITS = 4
_PIXEL_DIGEST_VERSION = b"ocr-origin/pixels/v1\0"


@dataclass(frozen=True)
class Fingerprint:
    sha256: str        # hex digest of the uploaded bytes (what the client sent)
    pixel_digest: str  # hex sha256 of the normalised decoded pixels (what the model sees)
    phash: int         # unsigned 64-bit perceptual hash (imagehash.phash, hash_size=8)
    width: int
    height: int
    unstable: int = 0  # mask of the pHash's UNSTABLE_BITS least stable bits (lookup only, not stored)
    fine: bytes = b""  # fine_hash(): ranks the pHash candidates (empty: not computed)

    @property
    def phash_hex(self) -> str:
        return format_phash(self.phash)


def format_phash(value: int) -> str:
    """16 lowercase hex digits, the same text imagehash prints."""
    return f"{value:016x}"


def parse_phash(text: str) -> int:
    value = int(text, 16)
    if not 0 <= value < 1 << PHASH_BITS or len(text) != 16:
        raise ValueError(f"not a 64-bit hex pHash: {text!r}")
    return value


def _phash_dct(image: Image.Image) -> tuple[int, np.ndarray]:
    """imagehash.phash(hash_size=8), step by step, keeping each bit's distance from the median.

    Same steps as imagehash 4.3 (greyscale, 32 x 32 Lanczos, 2-D DCT-II, top-left 8 x 8 > median);
    tests/unit/cache/test_fingerprint.py checks the bits against imagehash itself.
    """
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:8, :8]  # 32 x 32 -> 8 x 8
    med = np.median(dct)
    bits = (dct > med).flatten()  # row-major: bit 63 (the hex string's first) is dct[0, 0]
    return int.from_bytes(np.packbits(bits).tobytes(), "big"), np.abs(dct - med).flatten()


def phash64(image: Image.Image) -> int:
    """64-bit pHash as an unsigned int (bit order as imagehash's hex string)."""
    return _phash_dct(image)[0]


def phash_and_unstable(image: Image.Image, k: int = UNSTABLE_BITS) -> tuple[int, int]:
    """The pHash and a mask of its `k` bits nearest to flipping."""
    value, margin = _phash_dct(image)
    mask = 0
    for idx in np.argsort(margin, kind="stable")[:k]:
        mask |= 1 << (PHASH_BITS - 1 - int(idx))
    return value, mask


# The finer fingerprint that ranks near-duplicate candidates (issue 16 item 6): the 24 x 24
# lowest DCT coefficients of a 96 x 96 greyscale copy, each compared with their median (576 bits,
# 72 bytes). Pages from one template share the 64-bit pHash (it sees a 32 x 32 copy); at 96 x 96
# their differing lines differ. Measured on 12 invoices of one template (names, dates, amounts
# changed), 36 re-encodings/resizes: a copy is 0-8 bits from its own page, 38+ from any sibling
# (8 x 8 of 32 x 32: 0-4 vs 0+; 16 x 16 of 64 x 64: 0-4 vs 4+). README "Keys and reuse".
FINE_SIDE = 96
FINE_COEFFS = 24
FINE_BYTES = FINE_COEFFS * FINE_COEFFS // 8


def fine_hash(image: Image.Image) -> bytes:
    """576-bit DCT hash of a 96 x 96 greyscale copy (RGB pages and greyscale signatures alike)."""
    # reducing_gap: a box reduction first, then Lanczos (18 ms instead of 90 for an A4 page at 300
    # dpi on this machine); greyscale first, so a stored signature gives the upload's own hash
    small = image.convert("L").resize((FINE_SIDE, FINE_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = np.asarray(small, dtype=np.float64)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:FINE_COEFFS, :FINE_COEFFS]
    return np.packbits((dct > np.median(dct)).flatten()).tobytes()


def fine_distance(a: bytes, b: bytes) -> int:
    """Differing bits of two fine hashes of the same length."""
    return int.from_bytes(bytes(x ^ y for x, y in zip(a, b)), "big").bit_count()


def pixel_digest(image: Image.Image) -> str:
    """sha256 over the mode, size and raw pixels of a normalised (RGB, transposed) image.

    Two files that decode to the same pixels (PNG re-save, metadata edits, EXIF orientation
    applied vs stored rotated) get the same digest, hence the same key.
    """
    if image.mode != "RGB":
        raise ValueError(f"normalise to RGB first, got {image.mode}")
    h = hashlib.sha256(_PIXEL_DIGEST_VERSION)
    h.update(f"{image.mode}:{image.width}x{image.height}\0".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def fingerprint(image: Image.Image, data: bytes, *, sha256: str | None = None,
                phash: int | None = None, fine: bytes | None = None) -> Fingerprint:
    """Fingerprint a decoded, normalised RGB image and the bytes it came from.

    `sha256` (hex, of `data`), `phash` and `fine` (fine_hash): already computed by the caller
    (the origin hashes the bytes before decoding; a queue worker gets the origin's pHash and
    fine hash with the job), so not again. A given pHash comes without its unstable-bit mask,
    which only the near-duplicate lookup uses; a fine hash of the wrong length is recomputed."""
    unstable = 0
    if phash is None:
        phash, unstable = phash_and_unstable(image)
    if fine is None or len(fine) != FINE_BYTES:
        fine = fine_hash(image)  # ~1 ms on a line, ~18 ms on an A4 page at 300 dpi
    return Fingerprint(
        sha256=sha256 if sha256 is not None else hashlib.sha256(data).hexdigest(),
        pixel_digest=pixel_digest(image),
        phash=phash,
        width=image.width,
        height=image.height,
        unstable=unstable,
        fine=fine,
    )
