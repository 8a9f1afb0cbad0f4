"""Learned text-line detection for photos (labels, tickets, signs, banners): DB probability map →
rotated boxes → straightened crops, in reading order.

The classical finder in `ocr_core.lines` reads documents and screenshots fast; on photos it takes
texture for text and misses stylised lines. There the DB detector (`ocr_core.detector_model`) marks
text pixels, each connected region becomes a minimum-area rectangle grown back by the shrink the
detector was trained with ("unclip"), and each rectangle is warped to a horizontal crop padded the
way the recognizer was trained.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from ocr_core.detector_graph import load_any
from ocr_core.lines import PAD_FRACTION, TextLine, _row_groups
from ocr_core.runtime import DEFAULT_ENGINE, MapRunner, make_map_runner

logger = logging.getLogger(__name__)

DEFAULT_DETECTOR_WEIGHTS = Path(__file__).resolve().parent / "weights" / "dbnet.pt"

# Detector input: the longer side scaled to at most this many pixels, both sides multiples of 32.
# Text a photo is read for is rarely smaller than ~1.5 % of the image side, ~14 px here.
MAX_SIDE = 960
BIN_THRESHOLD = 0.3       # probability above which a pixel is "text"; PP-OCR's training threshold
BOX_THRESHOLD = 0.6       # mean probability inside a box below which it is dropped as noise
UNCLIP_RATIO = 1.5        # the detector learned maps shrunk by D = A (1 - 0.4²) / L; grow back
MIN_BOX_SIDE = 3
MAX_BOXES = 1000
# Scans, rendered documents and screenshots lie on one flat background (paper, a UI colour) that
# covers most of the image; photos of labels, tickets and signs do not. Below half, a photo.
PHOTO_MAX_FLAT_SHARE = 0.5
# ImageNet statistics, applied to BGR channels: how PP-OCR fed the detector in training.
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class DetectedLine:
    quad: np.ndarray          # 4 x 2 float32 corners clockwise from top-left, image coordinates
    score: float

    def text_line(self, width: int, height: int) -> TextLine:
        q = np.round(self.quad).astype(int)
        q[:, 0] = np.clip(q[:, 0], 0, width)
        q[:, 1] = np.clip(q[:, 1], 0, height)
        x0, y0 = q.min(axis=0)
        x1, y1 = q.max(axis=0)
        return TextLine((int(x0), int(y0), int(x1 - x0), int(y1 - y0)), tuple((int(x), int(y)) for x, y in q))


class TextDetector:
    """A loaded DBNet; build once per process and reuse."""

    def __init__(self, model: torch.nn.Module, *, max_side: int = MAX_SIDE, scaled_pm1: bool = False,
                 engine: str = DEFAULT_ENGINE, threads: int = 1) -> None:
        self.model = model
        # onnxruntime on an export of the module by default (ocr_core.runtime), or torch eager.
        self.runner: MapRunner = make_map_runner(model, engine, threads=threads)
        self.max_side = max_side
        # How the weights were trained to see pixels: PP-OCRv3's DBNet ImageNet-normalised BGR,
        # PP-OCRv6's detector BGR scaled to [-1, 1] (its weights file says "input": "bgr-pm1").
        self.to_input = detector_input_pm1 if scaled_pm1 else detector_input

    @classmethod
    def load(cls, weights: str | Path | bytes | None = None, **kwargs) -> "TextDetector":
        """From a path (the shipped weights by default) or a weights file's bytes."""
        t0 = time.perf_counter()
        source = weights if isinstance(weights, bytes) else str(weights or DEFAULT_DETECTOR_WEIGHTS)
        model, meta = load_any(source)
        logger.info("detector loaded version=%s ms=%.0f", meta.get("version"), (time.perf_counter() - t0) * 1e3)
        return cls(model, scaled_pm1=meta.get("input") == "bgr-pm1", **kwargs)

    def probability_map(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float]:
        """H x W x 3 RGB uint8 → probability map at detector scale and the x/y scale back to the image."""
        h, w = rgb.shape[:2]
        ratio = min(1.0, self.max_side / max(h, w))
        rh = max(32, int(round(h * ratio / 32)) * 32)
        rw = max(32, int(round(w * ratio / 32)) * 32)
        img = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
        prob = self.runner(self.to_input(img))[0, 0]                                 # rh x rw
        return prob, w / rw, h / rh

    def detect(self, rgb: np.ndarray) -> list[DetectedLine]:
        """Text lines as rotated quadrilaterals in image coordinates (unordered)."""
        prob, sx, sy = self.probability_map(rgb)
        return boxes_from_map(prob, sx, sy)

    def find_lines(self, rgb: np.ndarray,
                   found: list[DetectedLine] | None = None) -> list[tuple[TextLine, np.ndarray]]:
        """Detected lines in reading order, each with its straightened, padded crop (`found`: this
        image's detections when already made).

        Photos read row by row, top to bottom and left to right in a row: labels, tickets and signs
        are laid out that way, and column analysis split a ticket's rows into false columns. Rows
        are grouped as if the photo were level (its lines' own tilt undone, `level_boxes`): the
        upright boxes of lines tilted by a few degrees overlap the next row's, which interleaved
        the rows of a ticket photographed 5 degrees off (docs/benchmarks.md, "Deskew").
        """
        h, w = rgb.shape[:2]
        found = self.detect(rgb) if found is None else found
        if not found:
            return []
        lines = [d.text_line(w, h) for d in found]
        angle = page_tilt(found)
        order_boxes = [ln.box for ln in lines] if abs(angle) < LEVEL_MIN_ANGLE else level_boxes(found, angle, w, h)
        by_box: dict[tuple[int, int, int, int], list[int]] = {}
        for i, box in enumerate(order_boxes):
            by_box.setdefault(box, []).append(i)
        out = []
        for r, row in enumerate(_row_groups(order_boxes, join=False)):
            for box in row.boxes:
                idx = by_box.get(box)
                if idx:
                    i = idx.pop(0)
                    crop, to_image = straighten_mapped(rgb, found[i].quad)
                    out.append((replace(lines[i], to_image=tuple(float(v) for v in to_image.ravel()),
                                        visual_row=r), crop))
        return out


# Lines at least this many times longer than tall say which way the page's lines run; below
# LEVEL_MIN_ANGLE degrees the boxes are used as they are.
LEVEL_MIN_ASPECT = 2.0
LEVEL_MIN_ANGLE = 0.5


def page_tilt(found: list[DetectedLine]) -> float:
    """The tilt of a photo's text in degrees (positive: lines running down to the right): the
    median slope of its long lines' top edges; 0.0 without at least two such lines."""
    angles = []
    for d in found:
        tl, tr, _, bl = d.quad.astype(np.float64)
        length, height = float(np.linalg.norm(tr - tl)), float(np.linalg.norm(bl - tl))
        if length >= LEVEL_MIN_ASPECT * max(height, 1.0):
            angles.append(np.degrees(np.arctan2(tr[1] - tl[1], tr[0] - tl[0])))
    return float(np.median(angles)) if len(angles) >= 2 else 0.0


def level_boxes(found: list[DetectedLine], angle: float, width: int,
                height: int) -> list[tuple[int, int, int, int]]:
    """Each detection's upright box (x, y, w, h) as if the page were turned level: the quads
    turned back by the page's tilt (`page_tilt`, degrees) about the image centre."""
    t = np.radians(angle)
    c, s = np.cos(t), np.sin(t)
    centre = np.array([width / 2, height / 2])
    out = []
    for d in found:
        p = d.quad.astype(np.float64) - centre
        # turned by -angle: the direction (cos t, sin t) of a tilted line becomes (1, 0)
        q = np.stack([p[:, 0] * c + p[:, 1] * s, -p[:, 0] * s + p[:, 1] * c], axis=1) + centre
        x0, y0 = np.floor(q.min(axis=0)).astype(int)
        x1, y1 = np.ceil(q.max(axis=0)).astype(int)
        out.append((int(x0), int(y0), int(x1 - x0), int(y1 - y0)))
    return out


def detector_input(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB uint8 (sides multiples of 32) → 1 x 3 x H x W float32, BGR, ImageNet-normalised."""
    x = (rgb[:, :, ::-1].astype(np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def detector_input_pm1(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB uint8 → 1 x 3 x H x W float32, BGR scaled to [-1, 1] (PP-OCRv6's detector)."""
    x = rgb[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def flat_background_share(rgb: np.ndarray) -> float:
    """Share of pixels within ±10 grey levels of the most common level (image shrunk to ≤ 512 px)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    h, w = gray.shape
    r = min(1.0, 512 / max(h, w, 1))
    if r < 1:
        gray = cv2.resize(gray, (max(1, int(w * r)), max(1, int(h * r))), interpolation=cv2.INTER_AREA)
    hist = np.bincount(gray.ravel(), minlength=256)
    mode = int(hist.argmax())
    return float(hist[max(0, mode - 10):mode + 11].sum() / max(gray.size, 1))


def looks_like_photo(rgb: np.ndarray) -> bool:
    return flat_background_share(rgb) < PHOTO_MAX_FLAT_SHARE


def boxes_from_map(prob: np.ndarray, sx: float = 1.0, sy: float = 1.0) -> list[DetectedLine]:
    """Threshold the map, one minimum-area rectangle per region, scored, grown back, rescaled."""
    bitmap = (prob > BIN_THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out: list[DetectedLine] = []
    for contour in contours[:MAX_BOXES]:
        (cx, cy), (bw, bh), angle = cv2.minAreaRect(contour)
        if min(bw, bh) < MIN_BOX_SIDE:
            continue
        score = _box_score(prob, cv2.boxPoints(((cx, cy), (bw, bh), angle)))
        if score < BOX_THRESHOLD:
            continue
        # Offsetting a rectangle outward by d adds 2d to each side; d = area * ratio / perimeter.
        d = bw * bh * UNCLIP_RATIO / (2 * (bw + bh))
        bw, bh = bw + 2 * d, bh + 2 * d
        if min(bw, bh) < MIN_BOX_SIDE + 2:
            continue
        quad = _order_corners(cv2.boxPoints(((cx, cy), (bw, bh), angle)))
        quad[:, 0] *= sx
        quad[:, 1] *= sy
        out.append(DetectedLine(quad.astype(np.float32), score))
    return out


def _box_score(prob: np.ndarray, pts: np.ndarray) -> float:
    h, w = prob.shape
    x0, y0 = np.clip(np.floor(pts.min(axis=0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(pts.max(axis=0)).astype(int), 0, [w - 1, h - 1])
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(mask, [np.round(pts - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0:y1 + 1, x0:x1 + 1], mask)[0])


def _order_corners(pts: np.ndarray) -> np.ndarray:
    """Four points → top-left, top-right, bottom-right, bottom-left (for a line read left to right)."""
    pts = pts[np.argsort(pts[:, 0])]
    left, right = pts[:2], pts[2:]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.array([tl, tr, br, bl], np.float32)


def straighten(rgb: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Warp a quadrilateral to an upright crop with the recognizer's padding around the text.

    Vertical boxes (taller than 1.5x their width) are turned a quarter to read as a line.
    """
    return straighten_mapped(rgb, quad)[0]


def straighten_mapped(rgb: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`straighten`, with the 3 x 3 transform from the crop's pixels back to the image's (word
    boxes and page rotation map through it)."""
    tl, tr, br, bl = quad.astype(np.float32)
    w = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    h = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    # Unclipped DB boxes hug the ink (within ~3 % of the line height on synthetic lines of three
    # fonts at 20-48 px), so add the line finder's padding: 15 % of the text height, plus a pixel.
    pad = PAD_FRACTION * min(w, h) + 1
    # Grow the quad along its own axes so the padding follows the text's slant.
    ux = (tr - tl) / max(np.linalg.norm(tr - tl), 1e-6)
    uy = (bl - tl) / max(np.linalg.norm(bl - tl), 1e-6)
    src = np.array([tl - pad * ux - pad * uy, tr + pad * ux - pad * uy,
                    br + pad * ux + pad * uy, bl - pad * ux + pad * uy], np.float32)
    cw, ch = int(round(w + 2 * pad)), int(round(h + 2 * pad))
    dst = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    warp = cv2.getPerspectiveTransform(src, dst)
    crop = cv2.warpPerspective(rgb, warp, (max(cw, 1), max(ch, 1)),
                               flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    to_image = np.linalg.inv(warp)
    if ch >= 1.5 * cw:
        width = crop.shape[1]
        crop = np.rot90(crop)
        # np.rot90 turns counter-clockwise: the turned crop's (x, y) was (width - y, x) before it.
        to_image = to_image @ np.array([[0, -1, width], [1, 0, 0], [0, 0, 1]], np.float64)
    return np.ascontiguousarray(crop), to_image
