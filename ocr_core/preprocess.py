"""Line-crop preprocessing shared by inference and training (one code path, so they never drift).

RGB (or grey) crop → height 48 with the aspect kept (never cropped: a very long line is squeezed
to `MAX_WIDTH`) → BGR scaled to [-1, 1] → a batch padded on the right with zeros (mid grey): to its
widest line plus `PAD_MARGIN` columns, but never less than the widest line nor, for the margin's
sake, more than `TRAIN_WIDTH` (320). PP-OCRv6's CNN was trained on lines padded to 320 (RapidOCR
feeds every line that way), and its squeeze-excite blocks pool over the whole padded width; yet on
2,000 held-out synthetic short crops (2-16 characters, seeds 515151 and 424242) the margin reads as
well as padding to 320 (CER 1.14 vs 1.36 % and 1.51 vs 1.44 %), in 35-40 % less time
(docs/benchmarks.md, "Session 8"). Training and inference share this rule.
Colour is kept: the CNN was trained on colour photos, dark mode included.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ocr_core.model import INPUT_HEIGHT, WIDTH_STRIDE

MIN_WIDTH = WIDTH_STRIDE      # one CTC step
MAX_WIDTH = 4096              # 512 steps: a 250-character line still fits; wider crops are squeezed
TRAIN_WIDTH = 320             # the width PP-OCR pads lines to in training (see above)
PAD_MARGIN = 32               # padding after a short batch's widest line: 4 CTC steps, so the last
                              # glyph has blank frames after it as it had in training


def to_rgb_array(image: np.ndarray) -> np.ndarray:
    """H x W grey, H x W x 3 RGB or H x W x 4 RGBA (alpha ignored: callers flatten it) → H x W x 3."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def prepare_line_u8(image: np.ndarray) -> np.ndarray:
    """A line crop (RGB or grey uint8) → 48 x W x 3 uint8 RGB, W = ceil(48 · w / h) within limits."""
    rgb = to_rgb_array(image)
    h, w = rgb.shape[:2]
    new_w = max(MIN_WIDTH, min(MAX_WIDTH, math.ceil(w * INPUT_HEIGHT / max(h, 1))))
    return cv2.resize(np.ascontiguousarray(rgb), (new_w, INPUT_HEIGHT), interpolation=cv2.INTER_LINEAR)


def to_model_input(rgb48: np.ndarray) -> np.ndarray:
    """48 x W x 3 uint8 RGB → 3 x 48 x W float32 BGR in [-1, 1] (the CNN's training-time scaling)."""
    return (rgb48[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 127.5) - 1.0


def prepare_line(image: np.ndarray) -> np.ndarray:
    """A line crop (RGB or grey uint8) → 3 x 48 x W float32, ready for the CRNN."""
    return to_model_input(prepare_line_u8(image))


def stretch_width(image: np.ndarray, factor: float) -> np.ndarray:
    """A crop widened (factor > 1) or narrowed by `factor`, its height kept."""
    h, w = image.shape[:2]
    new_w = max(1, int(round(w * factor)))
    return cv2.resize(np.ascontiguousarray(image), (new_w, h), interpolation=cv2.INTER_LINEAR)


def steps_for_width(width: int) -> int:
    """CTC steps that cover a line of `width` input columns (the last one may be partly padding)."""
    return -(-width // WIDTH_STRIDE)


def batch_width(widths: list[int]) -> int:
    """The padded width of a batch: its widest line plus PAD_MARGIN, up to TRAIN_WIDTH (never less
    than the widest line), a multiple of the stride."""
    widest = max(widths)
    w = max(widest, min(widest + PAD_MARGIN, TRAIN_WIDTH))
    return -(-w // WIDTH_STRIDE) * WIDTH_STRIDE


def batch_lines(lines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pad prepared lines (3 x 48 x W_i) on the right with zeros to one N x 3 x 48 x W batch.

    Returns the batch and each line's number of valid CTC steps.
    """
    wmax = batch_width([x.shape[2] for x in lines])
    batch = np.zeros((len(lines), 3, INPUT_HEIGHT, wmax), dtype=np.float32)   # 0.0 == mid grey
    for i, x in enumerate(lines):
        batch[i, :, :, : x.shape[2]] = x
    steps = np.array([steps_for_width(x.shape[2]) for x in lines], dtype=np.int64)
    return batch, steps
