"""Line-crop preprocessing shared by inference and training (one code path, so they never drift).

grey → dark text on a light background (dark mode inverted) → contrast stretch → height 32 →
float in [-1, 1]. Colour carries no text information here, and removing it lets one model serve
dark mode, coloured backgrounds and photos alike.
"""
from __future__ import annotations

import cv2
import numpy as np

from ocr_core.model import INPUT_HEIGHT, WIDTH_STRIDE

MIN_WIDTH = 16       # input columns; 4 CTC steps
MAX_WIDTH = 4096     # a 1,000-character line still fits; wider crops are squeezed, never cut


def to_gray(image: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB (or H x W grey) uint8 → H x W uint8."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def normalise_contrast(gray: np.ndarray) -> np.ndarray:
    """Make text dark on light and stretch the 2nd-98th percentile range to 0-255."""
    if gray.size == 0:
        return gray
    # The border of a line crop is background (the line finder pads it). Pixels far from it are
    # ink; if the ink is brighter than the background (dark mode, white on colour), invert.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]).astype(np.int16)
    bg = int(np.median(border))
    diff = gray.astype(np.int16) - bg
    ink = np.abs(diff) > 30
    if (float(diff[ink].mean()) > 0) if ink.any() else bg < 128:
        gray = 255 - gray
    lo, hi = np.percentile(gray, (2, 98))
    if hi - lo < 8:  # flat crop: nothing to stretch, avoid amplifying noise
        return gray
    out = (gray.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def resize_to_height(gray: np.ndarray, height: int = INPUT_HEIGHT) -> np.ndarray:
    """Keep the aspect ratio; width rounded to the CTC stride and clamped to [MIN_WIDTH, MAX_WIDTH]."""
    h, w = gray.shape[:2]
    new_w = int(round(w * height / max(h, 1)))
    new_w = max(MIN_WIDTH, min(MAX_WIDTH, (new_w + WIDTH_STRIDE - 1) // WIDTH_STRIDE * WIDTH_STRIDE))
    interp = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(gray, (new_w, height), interpolation=interp)


def prepare_line_u8(image: np.ndarray) -> np.ndarray:
    """A line crop (RGB or grey uint8) → 32 x W uint8, contrast-normalised, dark text on light."""
    return resize_to_height(normalise_contrast(to_gray(image)))


def to_model_input(gray32: np.ndarray) -> np.ndarray:
    """32 x W uint8 → 32 x W float32 in [-1, 1] (the scaling the warm-start weights expect)."""
    return gray32.astype(np.float32) / 127.5 - 1.0


def prepare_line(image: np.ndarray) -> np.ndarray:
    """A line crop (RGB or grey uint8) → 32 x W float32 in [-1, 1], ready for the CRNN."""
    return to_model_input(prepare_line_u8(image))


def batch_lines(lines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pad prepared lines (32 x W_i) on the right with white to one N x 1 x 32 x W_max batch.

    Returns the batch and each line's number of valid CTC time steps.
    """
    wmax = max(x.shape[1] for x in lines)
    batch = np.ones((len(lines), 1, INPUT_HEIGHT, wmax), dtype=np.float32)  # 1.0 == white
    for i, x in enumerate(lines):
        batch[i, 0, :, : x.shape[1]] = x
    steps = np.array([x.shape[1] // WIDTH_STRIDE for x in lines], dtype=np.int64)
    return batch, steps
