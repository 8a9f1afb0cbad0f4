"""Rendering test images with Debian fonts (fonts-dejavu-core, fonts-noto-cjk; `make test` installs them)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

LATIN = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def font(text: str, size: int) -> ImageFont.FreeTypeFont:
    path = CJK if re.search(r"[\u3000-\u9fff\uff00-\uffef]", text) else LATIN
    if not path.exists():
        pytest.skip(f"font {path} is not installed")
    return ImageFont.truetype(str(path), size, index=2 if path.suffix == ".ttc" else 0)  # 2 = SC


def render_lines(lines: list[str], *, size: int = 28, dark: bool = False, gap: float = 1.0,
                 columns: int = 1, column_gap: int = 120) -> np.ndarray:
    """Text lines stacked (and split into columns), black on white or white on near-black; RGB array."""
    per_col = -(-len(lines) // columns)
    cols = [lines[i * per_col:(i + 1) * per_col] for i in range(columns)]
    fonts = [[font(t, size) for t in col] for col in cols]
    col_w = [max(int(f.getlength(t)) for f, t in zip(fs, col)) for fs, col in zip(fonts, cols)]
    step = int(size * (1.3 + gap))
    W = sum(col_w) + column_gap * (columns - 1) + 2 * size
    H = per_col * step + 2 * size
    bg, fg = ((24, 24, 28), (235, 235, 235)) if dark else ((255, 255, 255), (0, 0, 0))
    img = Image.new("RGB", (W, H), bg)
    draw = ImageDraw.Draw(img)
    x = size
    for col, fs, w in zip(cols, fonts, col_w):
        for i, (t, f) in enumerate(zip(col, fs)):
            draw.text((x, size + i * step), t, font=f, fill=fg)
        x += w + column_gap
    return np.asarray(img)


def render_line(text: str, *, size: int = 28, dark: bool = False) -> np.ndarray:
    """One line with a margin like the line finder's padding (about 15% of the line height)."""
    f = font(text, size)
    left, top, right, bottom = f.getbbox(text)
    pad = max(3, int(0.25 * size))
    bg, fg = ((24, 24, 28), (235, 235, 235)) if dark else ((255, 255, 255), (0, 0, 0))
    img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), bg)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=f, fill=fg)
    return np.asarray(img)
