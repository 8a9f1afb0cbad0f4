"""OCR core: preprocess → find lines → recognize (CRNN) → decode. No web, cache or cloud imports."""
from ocr_core.predictor import OcrLine, OcrResult, Predictor

__all__ = ["OcrLine", "OcrResult", "Predictor"]
