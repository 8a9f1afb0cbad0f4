"""The recognizer pipeline: preprocess → find lines → recognize (batched by width) → decode."""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ocr_core.charset import Charset
from ocr_core.decode import Decoded, greedy_decode
from ocr_core.detect import DEFAULT_DETECTOR_WEIGHTS, TextDetector, looks_like_photo
from ocr_core.lines import TextLine, crop_line, find_lines, whole_image_line
from ocr_core.model import CRNN, INPUT_HEIGHT, load_crnn
from ocr_core.preprocess import MIN_BATCH_WIDTH, batch_lines, prepare_line

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "crnn.pt"
# Lines are run in batches of similar width; a batch is capped in total input columns so padding
# and memory stay bounded on pages with many long lines.
MAX_BATCH_COLUMNS = 16_000
# On pages, a "line" whose characters the model is on average less than even odds about is almost
# always texture (fabric, foliage, photo edges) that the classical line finder took for text:
# real text reads at 0.9+ per character. Lone crops given as a single line are never filtered.
MIN_PAGE_CHAR_CONFIDENCE = 0.5
# How `Predictor.read` finds a page's lines: photos to the learned detector (auto), or one forced.
FINDERS = ("auto", "classical", "learned")


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float
    box: tuple[int, int, int, int]                 # x, y, w, h in the input image
    polygon: tuple[tuple[int, int], ...]           # 4 corners, clockwise from top-left
    char_confidences: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        return {"text": self.text, "confidence": round(self.confidence, 4), "box": list(self.box),
                "polygon": [list(p) for p in self.polygon],
                "char_confidences": [round(c, 4) for c in self.char_confidences]}


@dataclass
class OcrResult:
    text: str
    lines: list[OcrLine]
    width: int
    height: int
    elapsed_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    finder: str = "classical"       # which line finder read the page: classical, learned or single-line

    def to_dict(self) -> dict:
        return {"text": self.text, "lines": [ln.to_dict() for ln in self.lines], "width": self.width,
                "height": self.height, "elapsed_ms": round(self.elapsed_ms, 2), "finder": self.finder}


class Predictor:
    """A loaded CRNN (and the photo text detector); build once per process and reuse (loading
    costs ~100 ms)."""

    def __init__(self, model: CRNN, charset: Charset, *, name: str, version: str, jit: bool = True,
                 detector: TextDetector | None = None) -> None:
        self.model = model
        # What runs the forward pass: by default a channels-last copy traced and frozen (BatchNorm
        # folded), 1.3x faster than the eager module on one core with identical texts
        # (bench/infer_variants.py, docs/benchmarks.md); `jit=False` keeps the eager module.
        self.runner = _freeze(model) if jit else model
        self.charset = charset
        self.model_name = name
        self.model_version = version
        # Photos (labels, tickets, signs) go to the learned detector; without one every page takes
        # the classical finder.
        self.detector = detector

    @classmethod
    def load(cls, weights: str | Path | None = None, *, threads: int = 1, jit: bool = True,
             detector: str | Path | bool = True) -> "Predictor":
        """`detector`: True for the shipped DB weights, a path for others, False for none."""
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        if threads:
            # One intra-op thread per worker process: torch's spinning OpenMP collapses when
            # several busy processes share the cores (NOTES §1, threading trap).
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        data = path.read_bytes()      # read once: loaded and hashed
        model, meta = load_crnn(data)
        charset = Charset(list(meta["charset"]))
        assert len(charset) == model.cfg.num_classes, "charset does not match the model head"
        # The version names the exact weights: a retrained file gives a new key namespace upstream.
        digest = hashlib.sha256(data).hexdigest()[:12]
        version = f"{meta.get('version', 'dev')}-{digest}"
        det = None
        if detector:
            det_data = (DEFAULT_DETECTOR_WEIGHTS if detector is True else Path(detector)).read_bytes()
            det = TextDetector.load(det_data)
            # The detector changes what pages read as, so it is part of the version (and of the
            # cache key namespace upstream).
            version += "-db" + hashlib.sha256(det_data).hexdigest()[:8]
        logger.info("model loaded path=%s version=%s ms=%.0f", path, version, (time.perf_counter() - t0) * 1e3)
        return cls(model, charset, name=meta.get("name", "crnn"), version=version, jit=jit, detector=det)

    def warm_up(self) -> None:
        """Run one small page through every stage: the first real request then pays no one-off
        allocation and kernel-selection costs (~150 ms on a fresh worker)."""
        page = np.full((120, 360, 3), 255, dtype=np.uint8)
        for y in (24, 64):
            for x in range(20, 340, 22):
                page[y:y + 18, x:x + 14] = 0
        self.read(page)
        self.read(page[10:50], single_line=True)
        if self.detector is not None:
            self.detector.find_lines(page)

    # ------------------------------------------------------------------------------------------
    def recognize(self, crops: list[np.ndarray]) -> list[Decoded]:
        """Line crops (RGB or grey uint8) → one `Decoded` per crop, batching crops of similar width."""
        prepared = [prepare_line(c) for c in crops]                   # 3 x 48 x W_i each
        order = sorted(range(len(prepared)), key=lambda i: prepared[i].shape[2])
        results: list[Decoded | None] = [None] * len(prepared)
        batch: list[int] = []

        def flush() -> None:
            if not batch:
                return
            x, steps = batch_lines([prepared[i] for i in batch])      # N x 3 x 48 x W, valid steps
            with torch.inference_mode():
                lp = self.runner(torch.from_numpy(x)).numpy()           # N x T x C
            for j, i in enumerate(batch):
                results[i] = greedy_decode(lp[j, : steps[j]], self.charset)
            batch.clear()

        for i in order:
            w = prepared[i].shape[2]
            if batch and (len(batch) + 1) * max(w, MIN_BATCH_WIDTH) > MAX_BATCH_COLUMNS:
                flush()
            # Keep widths within 1.5x inside a batch: padding changes what the CNN's squeeze-excite
            # pools over and what the BiLSTM sees.
            if batch and w > 1.5 * max(prepared[batch[0]].shape[2], MIN_BATCH_WIDTH):
                flush()
            batch.append(i)
        flush()
        return [r for r in results if r is not None]

    def read(self, image, *, single_line: bool = False, finder: str = "auto") -> OcrResult:
        """Read a PIL image or an H x W x 3 uint8 RGB array; lines come back in reading order.

        `finder`: "auto" sends photos to the learned detector and the rest to the classical
        finder; "classical" or "learned" force one (for comparisons)."""
        if finder not in FINDERS:
            raise ValueError(f"finder must be one of {', '.join(FINDERS)}, not {finder!r}")
        if finder == "learned" and self.detector is None:
            raise ValueError("no text detector loaded")
        t0 = time.perf_counter()
        rgb = _as_rgb_array(image)
        h, w = rgb.shape[:2]
        t_lines = time.perf_counter()
        if single_line:
            finder = "single-line"
            lines: list[TextLine] = [whole_image_line(rgb)]
            crops = [rgb]
        elif finder == "learned" or (finder == "auto" and self.detector is not None and looks_like_photo(rgb)):
            finder = "learned"
            found = self.detector.find_lines(rgb)
            lines, crops = [ln for ln, _ in found], [c for _, c in found]
        else:
            finder = "classical"
            lines = find_lines(rgb)
            crops = [crop_line(rgb, ln) for ln in lines]
        t_rec = time.perf_counter()
        decoded = self.recognize(crops) if crops else []
        t_end = time.perf_counter()
        out: list[OcrLine] = []
        for ln, d in zip(lines, decoded):
            text = d.text.strip()
            if not text:
                continue
            if not single_line and sum(d.char_confidences) / len(d.char_confidences) < MIN_PAGE_CHAR_CONFIDENCE:
                continue
            out.append(OcrLine(text=text, confidence=d.confidence, box=ln.box, polygon=ln.polygon,
                               char_confidences=d.char_confidences))
        return OcrResult(
            text="\n".join(ln.text for ln in out), lines=out, width=w, height=h,
            elapsed_ms=(t_end - t0) * 1e3,
            timings_ms={"lines": (t_rec - t_lines) * 1e3, "recognize": (t_end - t_rec) * 1e3},
            finder=finder,
        )


class _ChannelsLast(torch.nn.Module):
    """Feeds a channels-last traced model: oneDNN's convolutions run faster in that layout."""

    def __init__(self, inner: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous(memory_format=torch.channels_last))


def _freeze(model: CRNN) -> torch.nn.Module:
    """A channels-last copy, traced on one example and frozen; widths and batch sizes stay dynamic
    (convolutions and the LSTM take any), which tests/unit/ocr_core checks against the eager module."""
    import copy
    import warnings

    example = torch.zeros(2, 3, INPUT_HEIGHT, MIN_BATCH_WIDTH).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarning: the shape asserts are checked once here
        twin = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
        traced = torch.jit.trace(twin, example, check_trace=False)
        return _ChannelsLast(torch.jit.freeze(traced))


def _as_rgb_array(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            return np.stack([image] * 3, axis=-1)
        return np.ascontiguousarray(image[:, :, :3])
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or an ndarray, got {type(image).__name__}")
    return np.asarray(image.convert("RGB"))
