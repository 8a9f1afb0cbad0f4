"""Rendering test images with Debian fonts (fonts-dejavu-core, fonts-noto-cjk; `make test` installs them)."""
from __future__ import annotations

import re
from pathlib import Path

from ocr_core.words import split_words

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


def render_words(lines: list[str], *, size: int = 26, margin: int = 30) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Black text on white, and every word's true box as its 4 ink corners (TL, TR, BR, BL)."""
    fonts = [font(t, size) for t in lines]
    step = int(size * 1.9)
    W = max(int(f.getlength(t)) for f, t in zip(fonts, lines)) + 2 * margin
    H = len(lines) * step + 2 * margin
    img = Image.new("RGB", (W, H), (255, 255, 255))
    truth = []
    for i, (t, f) in enumerate(zip(lines, fonts)):
        x, y = margin, margin + i * step
        ImageDraw.Draw(img).text((x, y), t, font=f, fill=(0, 0, 0))
        for a, b in split_words(t):
            alone = Image.new("L", (W, H), 0)
            ImageDraw.Draw(alone).text((x + f.getlength(t[:a]), y), t[a:b], font=f, fill=255)
            ys, xs = np.nonzero(np.asarray(alone) > 96)
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            truth.append((t[a:b], np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)))
    return np.asarray(img), truth


def _bounds(points: np.ndarray) -> tuple[float, float, float, float]:
    return float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max())


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def share_found(result, truth: list[tuple[str, np.ndarray]]) -> tuple[float, list]:
    """Share of true words that come back with the same text and a box of IoU ≥ 0.5 (each
    returned word used once), and the misses."""
    returned = [w for ln in result.lines for w in ln.words]
    used: set[int] = set()
    misses = []
    for text, corners in truth:
        best, best_iou = None, 0.0
        for k, w in enumerate(returned):
            if k in used or w.text != text:
                continue
            x, y, bw, bh = w.box
            v = iou(_bounds(corners), (x, y, x + bw, y + bh))
            if v > best_iou:
                best, best_iou = k, v
        if best is not None and best_iou >= 0.5:
            used.add(best)
        else:
            misses.append((text, round(best_iou, 2)))
    return 1 - len(misses) / len(truth), misses
