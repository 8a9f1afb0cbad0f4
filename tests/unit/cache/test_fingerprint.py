from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from cache.fingerprint import fingerprint, format_phash, parse_phash, phash64, pixel_digest

from .corpus import encode, render_lines, with_exif


def _page() -> Image.Image:
    return render_lines(("Invoice No. 2026-0042", "Total: $1,234.56"), "dejavu-sans", 20, 480)


def test_phash_pinned() -> None:
    # Pinned (imagehash convention): a Pillow/numpy/imagehash upgrade that shifts pHashes would
    # silently empty the near-duplicate index; this test catches it first.
    img = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(img).rectangle((8, 8, 40, 30), fill="black")
    assert format_phash(phash64(img)) == "be3ec1c1c13fc1c1"


def test_phash_matches_imagehash_hex() -> None:
    import imagehash

    img = _page()
    assert format_phash(phash64(img)) == str(imagehash.phash(img))


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
