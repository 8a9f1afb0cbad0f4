"""Limits in the units people read: "20 MiB", "40 megapixels" (error messages, the page, the docs).

Standard library only: deploy/nginx/render.py loads it by path before the venv exists."""
from __future__ import annotations


def human_bytes(n: int) -> str:
    """1536 -> "1.5 KiB", 20971520 -> "20 MiB" (binary units, like the limits are set)."""
    if n < 1024:
        return f"{n} bytes" if n != 1 else "1 byte"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def human_pixels(n: int) -> str:
    """40000000 -> "40 megapixels", 2500000 -> "2.5 megapixels", 90000 -> "0.09 megapixels"."""
    mp = n / 1_000_000
    text = f"{mp:.1f}" if mp >= 1 else f"{mp:.2g}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return f"{text} megapixel" + ("" if text == "1" else "s")
