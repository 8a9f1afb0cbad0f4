"""Word boxes from CTC positions: where each word of a read line lies, in image coordinates.

The recognizer says which CTC step emitted each character (`Decoded.char_steps`) and how many
steps the crop had (`Decoded.num_steps`); step t covers crop columns [t, t+1) * crop_width /
num_steps whatever the model's stride, so this module needs nothing else from the model.

Words are runs of characters between spaces; each CJK character (and CJK or full-width
punctuation) is a word of its own, as in the dev sets' scoring rule. A character's step falls
somewhere on its glyph, but where depends on the model (ours fires about a third of a glyph early
on CJK text), so the midpoint between two steps is not a boundary: two words are cut at the widest
ink-free run of columns between the last step of one and the first step of the next (the space
between Latin words, the gap between two CJK glyphs). Inside its columns the box is tightened to
the ink, so it hugs the word rather than the padded line. The box is then mapped to the image through
the crop's transform (a translation for the classical finder's axis-aligned crops, the inverse
warp for the detector's straightened ones, and the page rotation on top), so words of tilted and
rotated lines come back as 4-point polygons.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import cv2
import numpy as np

from ocr_core.lines import true_runs

# A character that is a word on its own: CJK ideographs, kana, hangul, CJK and full-width punctuation.
_SOLO = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float                            # the least confident of its characters
    box: tuple[int, int, int, int]               # x, y, w, h: the polygon's bounds in the image
    polygon: tuple[tuple[int, int], ...]         # 4 corners in the text's reading order (top-left first)

    def to_dict(self) -> dict:
        return {"text": self.text, "confidence": round(self.confidence, 4), "box": list(self.box),
                "polygon": [list(p) for p in self.polygon]}


def split_words(text: str) -> list[tuple[int, int]]:
    """(start, end) character index ranges (end exclusive) of the words of a decoded line."""
    spans: list[tuple[int, int]] = []
    start = None
    for i, ch in enumerate(text):
        if ch.isspace() or _SOLO.match(ch):
            if start is not None:
                spans.append((start, i))
                start = None
            if not ch.isspace():
                spans.append((i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


def translation(x: float, y: float) -> np.ndarray:
    """The crop → image transform of an axis-aligned crop whose top-left corner is (x, y)."""
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)


def apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """N x 2 points through a 3 x 3 projective transform."""
    pts = np.asarray(points, np.float64)
    h = np.hstack([pts, np.ones((len(pts), 1))]) @ np.asarray(transform, np.float64).T
    return h[:, :2] / h[:, 2:3]


Polygon = tuple[tuple[int, int], ...]
Box = tuple[int, int, int, int]


def polygons_and_boxes(polygons: np.ndarray) -> list[tuple[Polygon, Box]]:
    """K x P x 2 points → for each of the K polygons, its rounded points and their axis-aligned
    bounds (x, y, w, h); one numpy pass for all of them."""
    q = np.round(polygons).astype(int)
    lows, highs = q.min(axis=1).tolist(), q.max(axis=1).tolist()
    return [(tuple((x, y) for x, y in pts), (x0, y0, x1 - x0, y1 - y0))
            for pts, (x0, y0), (x1, y1) in zip(q.tolist(), lows, highs)]


def polygon_and_box(points: np.ndarray) -> tuple[Polygon, Box]:
    """Rounded polygon and its axis-aligned bounds (x, y, w, h)."""
    return polygons_and_boxes(np.asarray(points)[None])[0]


def _ink(crop: np.ndarray) -> np.ndarray:
    """Boolean ink mask of a line crop: dark-on-light or light-on-dark, decided by its border."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    gray = np.ascontiguousarray(gray)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if float(np.median(border)) < 128:   # light text on a dark background
        gray = 255 - gray
    if int(gray.max()) - int(gray.min()) < 24:   # flat crop: no ink to snap to
        return np.zeros(gray.shape, bool)
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    return mask > 0


def _line_band(ink: np.ndarray) -> tuple[int, int]:
    """Rows of the line's own ink: the run of inked rows around the crop's middle (a neighbour
    line's ascenders or descenders caught in the padding lie in runs of their own)."""
    h = ink.shape[0]
    rows = np.asarray(ink.any(axis=1), dtype=bool)
    if not rows.any():
        return 0, h
    # Bridge one-pixel gaps (the dot of an i, thin strokes after binarisation).
    filled = rows.copy()
    filled[1:-1] |= rows[:-2] & rows[2:]
    mid = h // 2
    if not filled[mid]:
        inked = np.flatnonzero(filled)
        mid = int(inked[np.argmin(np.abs(inked - mid))])
    top = mid
    while top > 0 and filled[top - 1]:
        top -= 1
    bottom = mid + 1
    while bottom < h and filled[bottom]:
        bottom += 1
    return top, bottom


def _cut(column_ink: np.ndarray, free: list[tuple[int, int]], starts: list[int],
         left: float, right: float, at: float, pull: float) -> int:
    """The column between two characters' steps where one word ends and the next begins: the
    widest ink-free run, less `pull` per pixel of its distance from the fraction `at` of the way.
    `free` holds the line's ink-free runs of columns (start, end), `starts` their starts: a
    window's runs are those runs clipped to it (found once per line, not once per window)."""
    lo = max(0, int(np.floor(min(left, right))))
    hi = min(len(column_ink), int(np.ceil(max(left, right))) + 1)
    mid = left + at * (right - left)
    if hi - lo < 2:
        return int(round(mid))
    best, best_score = -1, 0.0
    for k in range(max(0, bisect.bisect_right(starts, lo) - 1), len(free)):
        a, b = free[k]
        if a >= hi:
            break
        a, b = max(a, lo), min(b, hi)
        if a >= b:
            continue
        score = (b - a) - pull * abs((a + b) / 2 - mid)
        if best < 0 or score > best_score:    # the first of equals, left to right
            best, best_score = (a + b) // 2, score
    if best >= 0:
        return best
    seg = column_ink[lo:hi]
    least = np.flatnonzero(seg == seg.min())
    return lo + int(least[np.argmin(np.abs(lo + least - mid))])


def word_boxes(text: str, char_confidences: tuple[float, ...], char_steps: tuple[int, ...], num_steps: int,
               crop: np.ndarray, to_image: np.ndarray) -> list[Word]:
    """The words of one decoded line (`text` as decoded, spaces included) with their boxes.

    `crop` is what the recognizer read; `to_image` maps its pixel coordinates to the image's."""
    spans = split_words(text)
    if not spans or num_steps <= 0 or len(char_steps) != len(text):
        return []
    ch, cw = crop.shape[:2]
    scale = cw / num_steps
    centre = [(t + 0.5) * scale for t in char_steps]
    ink = _ink(crop)
    band_top, band_bottom = _line_band(ink)
    ink = ink[band_top:band_bottom]
    column_ink = ink.sum(axis=0)
    free = true_runs(column_ink == 0)
    starts = [a for a, _ in free]
    # Where one word ends and the next begins: between the last character's step of one and the
    # first character's step of the next, at the widest run of ink-free columns (the space, or the
    # gap between two CJK glyphs); without one, at the column with the least ink.
    windows = [(centre[b - 1], centre[a2]) for (_, b), (a2, _) in zip(spans, spans[1:])]
    first = [_cut(column_ink, free, starts, lo, hi, 0.5, 0.01) for lo, hi in windows]
    # Where in its window a cut falls depends on where the model fires on a glyph, which is the
    # same along a line: the second pass prefers gaps near the line's typical place, so a gap
    # inside a glyph (彳|艮 in 很) loses to the gap between glyphs.
    spread = [(c - lo) / (hi - lo) for c, (lo, hi) in zip(first, windows) if hi - lo >= 2]
    if len(spread) >= 3:
        f = float(np.median(spread))
        first = [_cut(column_ink, free, starts, lo, hi, f, 0.5) for lo, hi in windows]
    cuts = [0, *first, cw]
    inked_cols = column_ink > 0
    corners = np.empty((len(spans), 4, 2), np.float64)
    for n in range(len(spans)):
        x0, x1 = cuts[n], max(cuts[n + 1], cuts[n] + 1)
        cols = np.flatnonzero(inked_cols[x0:x1])
        if len(cols):
            rows = np.flatnonzero(ink[:, x0 + int(cols[0]):x0 + int(cols[-1]) + 1].any(axis=1))
            bx0, bx1 = x0 + int(cols[0]), x0 + int(cols[-1]) + 1
            by0, by1 = band_top + int(rows[0]), band_top + int(rows[-1]) + 1
        else:   # no ink found (a faint or flat crop): the window over the line's band
            bx0, bx1, by0, by1 = x0, x1, band_top, band_bottom
        corners[n] = ((bx0, by0), (bx1, by0), (bx1, by1), (bx0, by1))
    # All corners through the transform at once.
    placed = polygons_and_boxes(apply(to_image, corners.reshape(-1, 2)).reshape(-1, 4, 2))
    words: list[Word] = []
    for (a, b), (polygon, box) in zip(spans, placed):
        conf = min(char_confidences[a:b]) if char_confidences[a:b] else 0.0
        words.append(Word(text[a:b], float(conf), box, polygon))
    return words
