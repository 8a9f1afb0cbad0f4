"""Content fingerprints of a decoded upload: byte hash, pixel digest and 64-bit pHash."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

PHASH_BITS = 64
_PIXEL_DIGEST_VERSION = b"ocr-origin/pixels/v1\0"


@dataclass(frozen=True)
class Fingerprint:
    sha256: str        # hex digest of the uploaded bytes (what the client sent)
    pixel_digest: str  # hex sha256 of the normalised decoded pixels (what the model sees)
    phash: int         # unsigned 64-bit perceptual hash (imagehash.phash, hash_size=8)
    width: int
    height: int

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


def phash64(image: Image.Image) -> int:
    """64-bit pHash as an unsigned int (bit order as imagehash's hex string)."""
    bits = imagehash.phash(image, hash_size=8).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


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


def fingerprint(image: Image.Image, data: bytes) -> Fingerprint:
    """Fingerprint a decoded, normalised RGB image and the bytes it came from."""
    return Fingerprint(
        sha256=hashlib.sha256(data).hexdigest(),
        pixel_digest=pixel_digest(image),
        phash=phash64(image),
        width=image.width,
        height=image.height,
    )
