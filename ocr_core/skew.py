"""Deskew: the small tilt of a scanned or photographed document (up to ±10 degrees), found from
its ink and undone before the classical line finder cuts the page into lines.

The classical finder cuts pages along rows and columns of blank pixels; a page tilted by a few
degrees has no blank row between its lines, so it came back as a few tall "lines" of several rows
each (docs/benchmarks.md, "Deskew"). The learned detector returns tilted quads and needs none of
this.

How the angle is found: text lines are dense rows of ink. Projected onto the axis perpendicular to
the lines, ink piles up in sharp peaks (the lines) with empty valleys (the gaps); at any other
angle the peaks smear. The angle whose projection is sharpest (the largest sum of squared row
counts) is the tilt: coarse steps over ±MAX_ANGLE, then fine steps around the best. The ink is
the page's Otsu-binarised dark (or, on dark pages, light) pixels on a copy at most WORK_SIDE
pixels long, subsampled to MAX_POINTS: ~6 ms for a 1,000 x 350 page on this project's CPUs.

Angles are degrees, positive when the text lines run down to the right (the page turned
clockwise, image y pointing down).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ocr_core.lines import true_runs

MAX_ANGLE = 12.0       # searched range: the ±10 degrees a scan or photo of a document is tilted by, and a margin
COARSE_STEP = 1.0
FINE_STEP = 0.1
COARSE_POINTS = 4000   # the coarse pass needs fewer points (the sample is in random order)
MIN_ANGLE = 0.4        # smaller tilts are left alone: rows of blank pixels still separate the lines
# The tilted projection must be sharper than the upright one, with gaps between lines (at least
# MIN_GAPS): scattered shapes (a logo, a chart) can project a little sharper at some angle too,
# but less often into separate rows.
MIN_GAIN = 1.03
MIN_GAPS = 2
GAP_SHARE = 0.02       # a bin with at most this share of the fullest bin's ink is blank
# A tilt under this is left alone when the upright page already has all the line gaps: the finder
# separates its lines, the recognizer reads lines tilted this much (it trained on ±3 degrees), and
# turning the page would only resample (blur) every glyph.
FREE_TILT = 2.0
MIN_POINTS = 400       # fewer inked pixels: not enough text to measure a tilt
WORK_SIDE = 1200
MAX_POINTS = 8000


def _ink_points(rgb: np.ndarray) -> np.ndarray:
    """N x 2 float (x, y) of inked pixels of the working copy. Its own pixel units, not the page's:
    scaled back up, the points would sit on a lattice coarser than the 1-pixel bins, and the
    upright angle, where the lattice rows fall into bins exactly, would look sharpest."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    h, w = gray.shape
    scale = min(1.0, WORK_SIDE / max(h, w))
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if float(np.median(gray)) < 128:        # light text on a dark page
        gray = 255 - gray
    if int(gray.max()) - int(gray.min()) < 24:
        return np.zeros((0, 2))
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    ys, xs = np.nonzero(mask)
    if len(xs) > MAX_POINTS:
        # A fixed seed: the same page always gives the same angle. Not a fixed stride: every k-th
        # pixel in raster order lies on diagonal stripes that look like tilted lines.
        keep = np.random.default_rng(0).choice(len(xs), MAX_POINTS, replace=False)
        ys, xs = ys[keep], xs[keep]
    return np.stack([xs, ys], axis=1).astype(np.float32)


def _sharpness(points: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Sum of squared counts of the ink projected across lines tilted by each angle (1 px bins)."""
    a = np.radians(angles_deg).astype(np.float32)[:, None]
    # Distance of each point from the line through the origin tilted by the angle.
    proj = points[None, :, 1] * np.cos(a) - points[None, :, 0] * np.sin(a)     # A x N
    bins = np.round(proj - proj.min(axis=1, keepdims=True)).astype(np.int64)
    span = int(bins.max()) + 1
    # One bincount for all angles: angle i's bins start at i * span.
    counts = np.bincount((bins + np.arange(len(angles_deg))[:, None] * span).ravel(),
                         minlength=len(angles_deg) * span).reshape(len(angles_deg), span)
    return (counts.astype(np.float64) ** 2).sum(axis=1)


def _gaps(points: np.ndarray, angle_deg: float) -> int:
    """Runs of blank bins (2+ bins) between the first and the last inked bin of the projection
    across lines tilted by the angle: the gaps between text lines."""
    a = np.radians(angle_deg)
    proj = points[:, 1] * np.cos(a) - points[:, 0] * np.sin(a)
    counts = np.bincount(np.round(proj - proj.min()).astype(np.int64))
    return sum(1 for start, end in true_runs(counts <= GAP_SHARE * counts.max()) if end - start >= 2)


def estimate_skew(rgb: np.ndarray) -> float:
    """The page's tilt in degrees (positive: lines run down to the right); 0.0 when it is below
    MIN_ANGLE, not sharper than upright with gaps between lines, or there is too little ink to
    tell."""
    points = _ink_points(rgb)
    if len(points) < MIN_POINTS:
        return 0.0
    points = points - points.mean(axis=0)
    coarse = np.arange(-MAX_ANGLE, MAX_ANGLE + 1e-9, COARSE_STEP)
    score = _sharpness(points[:COARSE_POINTS], coarse)
    best = float(coarse[int(np.argmax(score))])
    fine = np.arange(best - COARSE_STEP, best + COARSE_STEP + 1e-9, FINE_STEP)
    fine_score = _sharpness(points, fine)
    angle = float(fine[int(np.argmax(fine_score))])
    if abs(angle) < MIN_ANGLE or abs(angle) > MAX_ANGLE - COARSE_STEP:
        return 0.0      # upright enough, or sharpest at the end of the range: no line found there
    if float(fine_score.max()) < MIN_GAIN * float(_sharpness(points, np.zeros(1))[0]):
        return 0.0
    gaps = _gaps(points, angle)
    if gaps < MIN_GAPS:
        return 0.0
    if abs(angle) < FREE_TILT and _gaps(points, 0.0) >= gaps:
        return 0.0
    return round(angle, 2)


def deskew(rgb: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The page turned back by `angle` degrees on a canvas large enough to hold all of it, the new
    corners filled with the page's border colour; and the 3 x 3 transform from the new image's
    pixels back to `rgb`'s."""
    h, w = rgb.shape[:2]
    t = math.radians(angle)
    c, s = abs(math.cos(t)), abs(math.sin(t))
    nw, nh = int(math.ceil(w * c + h * s)), int(math.ceil(w * s + h * c))
    # Turning counter-clockwise by `angle` (cv2's positive direction) levels lines that ran down
    # to the right; the shift centres the page on the larger canvas.
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    fill = tuple(int(v) for v in np.median(border.reshape(-1, rgb.shape[2] if rgb.ndim == 3 else 1), axis=0))
    out = cv2.warpAffine(rgb, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=fill if rgb.ndim == 3 else fill[0])
    forward = np.vstack([m, [0.0, 0.0, 1.0]])
    return out, np.linalg.inv(forward)


def tilt(rgb: np.ndarray, angle: float) -> np.ndarray:
    """The page tilted by `angle` degrees (positive: its lines then run down to the right), as a
    scanner or a hand-held camera would: benchmarks and tests make tilted pages with it."""
    return deskew(rgb, -angle)[0]
