"""Find text lines on a page (documents, receipts, screenshots) with classical OpenCV.

binarise (adaptive threshold, dark mode aware) → estimate the glyph height → smear characters
horizontally into line blobs → connected components → boxes padded by 15 % of the line height,
in reading order (columns left to right, lines top to bottom within a column).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_FRACTION = 0.15   # the padding the recognizer was trained with


@dataclass(frozen=True)
class TextLine:
    box: tuple[int, int, int, int]                  # x, y, w, h (padded, clipped to the image)
    polygon: tuple[tuple[int, int], ...]            # 4 corners clockwise from top-left


def _polygon(x: int, y: int, w: int, h: int) -> tuple[tuple[int, int], ...]:
    return ((x, y), (x + w, y), (x + w, y + h), (x, y + h))


def whole_image_line(rgb: np.ndarray) -> TextLine:
    h, w = rgb.shape[:2]
    return TextLine((0, 0, w, h), _polygon(0, 0, w, h))


def crop_line(rgb: np.ndarray, line: TextLine) -> np.ndarray:
    x, y, w, h = line.box
    return rgb[y:y + h, x:x + w]


def _ink_mask(gray: np.ndarray) -> np.ndarray:
    """Binary mask of ink (255) whatever the polarity of the page."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) < 128:          # dark mode: make ink dark on light
        gray = 255 - gray
    block = max(15, (min(gray.shape) // 40) | 1)
    mask = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 12)
    return mask


def find_lines(rgb: np.ndarray) -> list[TextLine]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    H, W = gray.shape
    if H < 8 or W < 8:
        return [whole_image_line(rgb)]
    mask = _ink_mask(gray)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    comps = stats[1:]
    # Glyph height: median height of components that look like characters (not specks, not rules).
    hs = comps[:, cv2.CC_STAT_HEIGHT]
    ws = comps[:, cv2.CC_STAT_WIDTH]
    plausible = (hs >= 6) & (hs < H * 0.5) & (ws < W * 0.5) & (comps[:, cv2.CC_STAT_AREA] >= 12)
    if not plausible.any():
        return [whole_image_line(rgb)]
    glyph_h = float(np.median(hs[plausible]))
    # Keep only character-like components; drop long rules and big blocks (tables, photos).
    keep = np.zeros(mask.shape, np.uint8)
    lab = cv2.connectedComponents(mask, connectivity=8)[1]
    good = np.flatnonzero(plausible & (hs < glyph_h * 3.5) & (ws < glyph_h * 25)) + 1
    keep[np.isin(lab, good)] = 255
    # Smear horizontally by ~1.2 glyph heights so words of a line merge but columns do not.
    kw = max(3, int(glyph_h * 1.2))
    smear = cv2.morphologyEx(keep, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (kw, 1)))
    smear = cv2.dilate(smear, cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(1, int(glyph_h * 0.15)))))
    m, _, st, _ = cv2.connectedComponentsWithStats(smear, connectivity=8)
    boxes = []
    for x, y, w, h, area in st[1:]:
        if h < glyph_h * 0.4 or w < glyph_h * 0.3 or area < glyph_h * glyph_h * 0.2:
            continue
        boxes.append((int(x), int(y), int(w), int(h)))
    if not boxes:
        return [whole_image_line(rgb)]
    boxes = _split_tall(boxes, keep, glyph_h)
    ordered = _reading_order(boxes, W)
    out = []
    for x, y, w, h in ordered:
        pad = int(round(PAD_FRACTION * h)) + 1
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(W, x + w + pad), min(H, y + h + pad)
        out.append(TextLine((x0, y0, x1 - x0, y1 - y0), _polygon(x0, y0, x1 - x0, y1 - y0)))
    return out


def _split_tall(boxes: list[tuple[int, int, int, int]], ink: np.ndarray, glyph_h: float) -> list[tuple[int, int, int, int]]:
    """Split blobs that merged two or more lines, at rows with no ink."""
    out = []
    for x, y, w, h in boxes:
        if h < glyph_h * 1.8:
            out.append((x, y, w, h))
            continue
        prof = (ink[y:y + h, x:x + w] > 0).sum(axis=1)
        rows = prof > max(1, 0.02 * w)
        start = None
        for i, r in enumerate(list(rows) + [False]):
            if r and start is None:
                start = i
            elif not r and start is not None:
                if i - start >= glyph_h * 0.4:
                    sub = ink[y + start:y + i, x:x + w]
                    cols = np.flatnonzero(sub.any(axis=0))
                    out.append((x + int(cols[0]), y + start, int(cols[-1] - cols[0] + 1), i - start))
                start = None
    return out


def _reading_order(boxes: list[tuple[int, int, int, int]], page_w: int) -> list[tuple[int, int, int, int]]:
    """Columns left to right (split at x positions no box crosses), top to bottom inside each."""
    spans = sorted((x, x + w) for x, _, w, _ in boxes)
    columns: list[list[int]] = []
    for a, b in spans:
        if columns and a <= columns[-1][1]:
            columns[-1][1] = max(columns[-1][1], b)
        else:
            columns.append([a, b])
    # A "column" narrower than 15 % of the page next to others is usually a label/value pair on
    # one row (forms, tables): then one top-to-bottom order across the page reads better.
    if len(columns) > 1 and min(b - a for a, b in columns) < 0.15 * page_w:
        return _rows(boxes)
    out = []
    for a, b in columns:
        col = [bx for bx in boxes if a <= bx[0] and bx[0] + bx[2] <= b]
        out.extend(_rows(col))
    return out


def _rows(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Top to bottom; boxes whose vertical centres overlap form one row, read left to right."""
    boxes = sorted(boxes, key=lambda b: b[1] + b[3] / 2)
    rows: list[list[tuple[int, int, int, int]]] = []
    for b in boxes:
        cy = b[1] + b[3] / 2
        if rows:
            last = rows[-1]
            ly0 = min(r[1] for r in last)
            ly1 = max(r[1] + r[3] for r in last)
            if ly0 <= cy <= ly1:
                last.append(b)
                continue
        rows.append([b])
    return [b for row in rows for b in sorted(row, key=lambda r: r[0])]
