from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from cache.fingerprint import (UNSTABLE_BITS, fingerprint, format_phash, parse_phash, phash64,
                               phash_and_unstable, pixel_digest)

from .corpus import encode, one_char_pairs, render_lines, variants, with_exif


def _page() -> Image.Image:
    return render_lines(("Invoice No. 2026-0042", "Total: $1,234.56"), "dejavu-sans", 20, 480)


def test_phash_pinned() -> None:
    # Pinned (imagehash convention): a Pillow/numpy/imagehash upgrade that shifts pHashes would
    # silently empty the near-duplicate index; this test catches it first.
    img = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(img).rectangle((8, 8, 40, 30), fill="black")
    assert format_phash(phash64(img)) == "be3ec1c1c13fc1c1"


def test_phash_matches_imagehash_hex() -> None:
    """Our step-by-step pHash (it also needs each bit's margin) is imagehash's, bit for bit."""
    import random

    import imagehash

    rng = random.Random(3)
    pages = [_page()] + [a.render() for a, _ in one_char_pairs(12, seed=3)]
    for img in pages:
        for candidate in (img, Image.open(io.BytesIO(variants(img, rng)[0][1])).convert("RGB")):
            assert format_phash(phash64(candidate)) == str(imagehash.phash(candidate))


def test_unstable_bits_cover_a_sparse_page_reencoding() -> None:
    """Small text on a wide page: JPEG moves the pHash by 6, all of it in the query's least
    stable bits but 4 or fewer, so the lookup (d = 4, those bits ignored) still finds it."""
    a, _ = one_char_pairs(50, seed=99)[13]
    img = a.render()
    assert (a.font, a.size, a.width) == ("wqy-microhei", 11, 1280)
    stored = phash64(img)
    jpeg = Image.open(io.BytesIO(encode(img, "JPEG", quality=95))).convert("RGB")
    query, unstable = phash_and_unstable(jpeg)
    assert bin(unstable).count("1") == UNSTABLE_BITS
    assert bin(query ^ stored).count("1") > 4
    assert bin((query ^ stored) & ~unstable).count("1") <= 4


def test_pixel_digest_ignores_container_and_metadata() -> None:
    img = _page()
    png = encode(img, "PNG")
    png_opt = encode(img, "PNG", optimize=True, compress_level=9)
    assert png != png_opt
    decode = lambda b: Image.open(io.BytesIO(b)).convert("RGB")  # noqa: E731
    assert pixel_digest(decode(png)) == pixel_digest(decode(png_opt)) == pixel_digest(img)


def test_pixel_digest_sees_one_pixel() -> None:
    img = _page()
    other = img.copy()
    other.putpixel((3, 3), (254, 255, 255))
    assert pixel_digest(img) != pixel_digest(other)


def test_fingerprint_fields() -> None:
    img = _page()
    data = encode(img, "PNG")
    fp = fingerprint(img, data)
    assert (fp.width, fp.height) == img.size
    assert len(fp.sha256) == 64 and len(fp.pixel_digest) == 64
    assert 0 <= fp.phash < 2**64 and parse_phash(fp.phash_hex) == fp.phash


def test_pixel_digest_requires_rgb() -> None:
    with pytest.raises(ValueError):
        pixel_digest(Image.new("L", (4, 4)))


def test_parse_phash_rejects_garbage() -> None:
    for bad in ("", "xyz", "1" * 17, "-" + "1" * 15):
        with pytest.raises(ValueError):
            parse_phash(bad)


def test_exif_orientation_file_decodes_to_same_pixels() -> None:
    from PIL import ImageOps

    img = _page()
    rotated = with_exif(img, description="x", orientation=6)
    upright = with_exif(img, description="x")
    a = ImageOps.exif_transpose(Image.open(io.BytesIO(rotated))).convert("RGB")
    b = ImageOps.exif_transpose(Image.open(io.BytesIO(upright))).convert("RGB")
    assert a.size == b.size == img.size
