"""OCR core: preprocess → find lines → recognize (CRNN) → decode. No web, cache or cloud imports."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocr_core.predictor import OcrLine, OcrResult, Predictor

__all__ = ["OcrLine", "OcrResult", "Predictor"]


def __getattr__(name: str):
    # Lazy: `ocr_core.images` (used by the origin's decoder) must not pay torch's import time;
    # the predictor loads torch when it is first asked for.
    if name in __all__:
        from ocr_core import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'ocr_core' has no attribute {name!r}")
