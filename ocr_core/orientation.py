"""Which way up a page is: 0, 90, 180 or 270 degrees, decided before and while reading it.

Two questions, answered by different evidence:

1. **Do the lines run across or down the image?** Documents: inside a line, glyphs sit close to
   their neighbours along the line (letter and character spacing, ~0.1 em) and far from those
   across it (the gap between lines, ~0.3-1 em). For each glyph-like ink component we take the
   nearest gap to a neighbour that overlaps it vertically (so lies beside it) and to one that
   overlaps it horizontally (above or below it); on a page whose lines run across, most glyphs
   have the closer neighbour beside them. This costs one connected-component pass over the page.
   Photos (the learned detector's route): texture and big display type make glyph geometry
   unreliable there, so the detector's own boxes vote: more standing lines than lying ones means
   the photo is turned a quarter (its detections are reused when it is not).
2. **Is it upside down?** Glyph geometry cannot tell; the recognizer can: text read the right way
   up comes out with confident characters, turned by 180 degrees with unsure ones. The page is read
   first as the geometry says; only when that reading is unsure are a few of its longest lines read
   turned by 180 degrees, and the page is read again turned only when those read clearly better.
   Confident upright pages (the usual case) pay only for step 1.

Rotations are counted clockwise: `rotation` is the clockwise turn, in degrees, that made the
uploaded image upright. Boxes stay in the uploaded image's coordinates (`to_upload` maps them back).
"""
from __future__ import annotations

import cv2
import numpy as np

# Step 1 looks at a page shrunk so its longer side is at most this: enough for 10 px glyphs on an
# A4 scan at 150 dpi, and it bounds the cost on large photos.
MAX_SIDE = 1600
# At most this many glyphs are compared with all others (sampled evenly): the vote is stable long
# before, and the pairwise gaps stay a small cost.
MAX_GLYPHS = 400
# Too few glyphs to vote: keep the page as it is.
MIN_GLYPHS = 8
# Share of voting glyphs whose nearer neighbour lies above or below them beyond which the lines run
# down the image (turned by 90 or 270 degrees). Upright text of any script votes well below half;
# the margin keeps tables and sparse forms (whose cells stack neatly) upright.
VERTICAL_SHARE = 0.62


def glyph_boxes(rgb: np.ndarray) -> np.ndarray:
    """N x 4 (x, y, w, h) of glyph-like ink components, in the (possibly shrunk) page's pixels."""
    from ocr_core.lines import _dark_mode, _glyphs, _ink_mask

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    h, w = gray.shape
    r = min(1.0, MAX_SIDE / max(h, w, 1))
    if r < 1:
        gray = cv2.resize(gray, (max(1, int(w * r)), max(1, int(h * r))), interpolation=cv2.INTER_AREA)
    if min(gray.shape) < 8:
        return np.zeros((0, 4), np.int32)
    _, comps, plausible = _glyphs(_ink_mask(gray, _dark_mode(gray)))
    boxes = comps[plausible][:, :4].astype(np.int32)
    if len(boxes) == 0:
        return boxes
    # Glyphs only: specks, rules and tall blocks vote for nothing.
    hs = boxes[:, 3]
    med = float(np.median(hs))
    return boxes[(hs >= 0.4 * med) & (hs <= 3 * med) & (boxes[:, 2] <= 6 * med)]


def vertical_share(boxes: np.ndarray) -> float | None:
    """Share of glyphs whose nearest neighbour lies above/below rather than beside them (None if
    too few glyphs vote)."""
    n = len(boxes)
    if n < MIN_GLYPHS:
        return None
    sample = boxes[np.linspace(0, n - 1, min(n, MAX_GLYPHS)).astype(int)].astype(np.float32)
    allb = boxes.astype(np.float32)
    x0, y0 = sample[:, 0:1], sample[:, 1:2]
    x1, y1 = x0 + sample[:, 2:3], y0 + sample[:, 3:4]
    X0, Y0 = allb[None, :, 0], allb[None, :, 1]
    X1, Y1 = X0 + allb[None, :, 2], Y0 + allb[None, :, 3]
    # Overlap along each axis, relative to the smaller of the two extents.
    ov_y = (np.minimum(y1, Y1) - np.maximum(y0, Y0)) / np.minimum(y1 - y0, Y1 - Y0)
    ov_x = (np.minimum(x1, X1) - np.maximum(x0, X0)) / np.minimum(x1 - x0, X1 - X0)
    gap_x = np.maximum(X0 - x1, x0 - X1)     # edge-to-edge gap beside (negative: they overlap)
    gap_y = np.maximum(Y0 - y1, y0 - Y1)
    inf = np.float32(np.inf)
    beside = np.where((ov_y >= 0.5) & (gap_x >= 0), gap_x, inf).min(axis=1)
    above = np.where((ov_x >= 0.5) & (gap_y >= 0), gap_y, inf).min(axis=1)
    voting = np.isfinite(beside) | np.isfinite(above)
    if voting.sum() < MIN_GLYPHS:
        return None
    return float((above[voting] < beside[voting]).mean())


def lines_run_down(rgb: np.ndarray) -> bool:
    """True when the page's text lines run down the image (it is turned by 90 or 270 degrees)."""
    share = vertical_share(glyph_boxes(rgb))
    return share is not None and share > VERTICAL_SHARE


def boxes_run_down(quads: list[np.ndarray]) -> bool:
    """For the photo detector's boxes (4 x 2 corners, `detect.DetectedLine.quad`): True when more
    of the elongated boxes stand (taller than 1.5x their width) than lie. On photos, texture and
    big display type make glyph geometry unreliable, while a detected line's shape is not."""
    tall = wide = 0
    for q in quads:
        w = float(np.linalg.norm(q[1] - q[0]))
        h = float(np.linalg.norm(q[3] - q[0]))
        tall += h >= 1.5 * w
        wide += w >= 1.5 * h
    return tall > wide


def turn(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The image turned clockwise by `rotation` degrees (0, 90, 180, 270)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, -k)) if k else rgb


def to_upload(rotation: int, width: int, height: int) -> np.ndarray:
    """3 x 3 transform from the pixels of the upload turned clockwise by `rotation` back to the
    upload's own (`width` x `height`) pixels."""
    k = (rotation // 90) % 4
    if k == 0:
        return np.eye(3)
    if k == 1:      # turned clockwise: (x', y') came from (y', height - x')
        return np.array([[0, 1, 0], [-1, 0, height], [0, 0, 1]], np.float64)
    if k == 2:
        return np.array([[-1, 0, width], [0, -1, height], [0, 0, 1]], np.float64)
    return np.array([[0, -1, width], [1, 0, 0], [0, 0, 1]], np.float64)   # counter-clockwise
