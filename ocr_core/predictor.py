"""The recognizer pipeline: preprocess → find lines → recognize (batched by width) → decode."""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ocr_core.charset import Charset
from ocr_core.decode import Decoded, collapse_path
from ocr_core.detect import DEFAULT_DETECTOR_WEIGHTS, TextDetector, looks_like_photo
from ocr_core.lines import TextLine, crop_line, find_lines, whole_image_line
from ocr_core.model import CRNN, load_crnn
from ocr_core.orientation import boxes_run_down, lines_run_down, to_upload, turn
from ocr_core.preprocess import batch_lines, batch_width, prepare_line, stretch_width, to_rgb_array
from ocr_core.quantized import DEFAULT_PRECISION, cpu_has_vnni, precision_tag, resolve_precision
from ocr_core.runtime import DEFAULT_ENGINE, LineRunner, make_runner
from ocr_core.skew import deskew as deskewed
from ocr_core.skew import estimate_skew
from ocr_core.words import Word, apply, polygon_and_box, translation, word_boxes

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "crnn.pt"
# The same model fine-tuned to read through int8 rounding (`ocr_core.train.qat`), with its
# activation ranges: what the first reading runs when its precision resolves to int8 and no other
# weights were named. DEFAULT_WEIGHTS serves fp32 (docs/benchmarks.md, "Session 19").
DEFAULT_INT8_WEIGHTS = DEFAULT_WEIGHTS.with_name("crnn-int8.pt")
# Lines are run in batches of similar width; a batch is capped in total input columns so padding
# and memory stay bounded on pages with many long lines.
MAX_BATCH_COLUMNS = 16_000
# On pages, a "line" whose characters the model is on average less than even odds about is almost
# always texture (fabric, foliage, photo edges) that the classical line finder took for text:
# real text reads at 0.9+ per character. Lone crops given as a single line are never filtered.
MIN_PAGE_CHAR_CONFIDENCE = 0.5
# What a result holds besides the weights' reading: line finding, orientation, word boxes, table
# rows. Part of the model version (and so of the key namespace upstream): bump it when a change to
# the pipeline changes results, so results made before are not reused as if made now.
PIPELINE_VERSION = "p14"
# How `Predictor.read` finds a page's lines: photos to the learned detector (auto), or one forced.
FINDERS = ("auto", "classical", "learned")
# Orientation (ocr_core.orientation): a page whose characters read at a mean confidence under this
# may be upside down; its longest lines are then read turned (at most this many), and the page is
# turned when they read surer by more than the margin. Upright text reads at 0.9+ per character.
UPRIGHT_CONFIDENCE = 0.85
FLIP_SAMPLE_LINES = 4
FLIP_MARGIN = 0.1
# On an upright page, a line reading under this mean character confidence is also read turned by
# 180 degrees (a label upside down on the page); texture the finder took for text reads under it
# both ways and costs one more recognition of its crop.
LINE_FLIP_CONFIDENCE = 0.75
# A second look at crowded unsure lines. The CNN gives one CTC step per 8 columns of the
# 48-pixel-high crop, so runs of narrow glyphs (i, l, t, f, 1) in a condensed face or tight tracking
# get fewer steps than they need and drop out (`illicit` read `illi`), with a telltale low
# confidence. A line read at a mean character confidence under SECOND_LOOK_CONFIDENCE whose
# characters took at least SECOND_LOOK_DENSITY of its steps is read again stretched to
# SECOND_LOOK_STRETCH times its width (each glyph then gets steps of its own), and the second
# reading is kept when it is both surer and confident (UPRIGHT_CONFIDENCE). The stretch and the
# threshold were chosen on held-out synthetic lines (seeds 5151 and 6161) and checked on seed 8181
# and on clipped lines; the density nearly halves the lines read twice there at the same gain on
# unclipped lines. The confidence guard was added after a first version without it read the dev
# set's real Chinese pages worse (docs/benchmarks.md, "Session 13"). Most lines are read once.
SECOND_LOOK_CONFIDENCE = 0.95
SECOND_LOOK_DENSITY = 0.35
SECOND_LOOK_STRETCH = 1.4
# A line whose characters took at least SECOND_LOOK_CROWDED of its steps is read again stretched
# whatever its confidence: with a character at nearly every step, no step is left for the blank that
# must separate a doubled letter (`free` read `fre`) or for a space (`thereof. 2.` read
# `thereof.2.`), and such lines read wrong at 0.96-0.997. Chosen on held-out synthetic lines (seeds
# 5151 and 6161), checked on seed 8181 and clipped lines (docs/benchmarks.md, "Session 15").
# Such a line (sure, so its glyphs were seen) is read again from its first reading's CNN map at
# twice the steps instead of stretched through the CNN again: the BiLSTM then has the steps it
# lacked, and only the BiLSTM and the classifier run (~8 ms for a camera-like dev line, where a
# stretched re-read costs more than the first reading's ~20 ms). On the same held-out lines it
# mends what the stretch mends (743 → 746 errors on seeds 5151 + 6161, 204 on 8181 either way;
# docs/benchmarks.md, "Session 16").
# Unsure lines are still stretched: a glyph the CNN did not resolve needs more pixels, not steps.
SECOND_LOOK_CROWDED = 0.6


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float
    box: tuple[int, int, int, int]                 # x, y, w, h in the input image
    polygon: tuple[tuple[int, int], ...]           # 4 corners, clockwise from top-left
    char_confidences: tuple[float, ...] = ()
    words: tuple[Word, ...] = ()                   # space-separated words, each CJK character one
    visual_row: int | None = None                  # lines sharing it sit side by side on one row
    cell: tuple[int, int] | None = None            # (row, column) in the table it belongs to

    def to_dict(self) -> dict:
        d = {"text": self.text, "confidence": round(self.confidence, 4), "box": list(self.box),
             "polygon": [list(p) for p in self.polygon],
             "char_confidences": [round(c, 4) for c in self.char_confidences],
             "words": [w.to_dict() for w in self.words]}
        if self.cell is not None:
            d["row"], d["column"] = self.cell
        return d


@dataclass
class OcrResult:
    text: str
    lines: list[OcrLine]
    width: int
    height: int
    elapsed_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    finder: str = "classical"       # which line finder read the page: classical, learned or single-line
    rotation: int = 0               # clockwise turn (0/90/180/270) that made the image upright
    skew: float = 0.0               # degrees the upright page was tilted (lines running down to the right: +)

    def to_dict(self) -> dict:
        return {"text": self.text, "lines": [ln.to_dict() for ln in self.lines], "width": self.width,
                "height": self.height, "elapsed_ms": round(self.elapsed_ms, 2), "finder": self.finder,
                "rotation": self.rotation, "skew": self.skew}


@dataclass
class _Page:
    """An upright page read: its lines (in the coordinates of the image they were found on), their
    crops and readings, and that image's pixels → the upright page's (a deskew, or identity)."""
    lines: list[TextLine]
    crops: list[np.ndarray]
    decoded: list[Decoded]
    to_page: np.ndarray
    skew: float = 0.0
    # The CNN map of each line the second look reads from its map (`_second_look_kind`), else None.
    columns: list[np.ndarray | None] = field(default_factory=list)


class Predictor:
    """A loaded CRNN (and the photo text detector); build once per process and reuse (loading
    costs ~100 ms)."""

    def __init__(self, model: CRNN, charset: Charset, *, name: str, version: str,
                 engine: str = DEFAULT_ENGINE, threads: int = 1, detector: TextDetector | None = None,
                 int8_ranges: dict[str, list[float]] | None = None) -> None:
        self.model = model
        # What runs the forward pass (ocr_core.runtime): onnxruntime on an export of this very
        # module by default (its 1x1 convolutions in int8 given `int8_ranges`), or a frozen
        # TorchScript trace; all return the greedy path only.
        self.runner: LineRunner = make_runner(model, engine, threads=threads, int8_ranges=int8_ranges)
        self.precision = "fp32" if int8_ranges is None else "int8"
        self.charset = charset
        self.model_name = name
        self.model_version = version
        self.weights_path: Path | None = None           # the file `load` read, when it read one
        # Photos (labels, tickets, signs) go to the learned detector; without one every page takes
        # the classical finder.
        self.detector = detector

    @classmethod
    def load(cls, weights: str | Path | None = None, *, threads: int = 1, engine: str = DEFAULT_ENGINE,
             detector: str | Path | bool = True, precision: str = DEFAULT_PRECISION) -> "Predictor":
        """`detector`: True for the shipped DB weights, a path for others, False for none;
        `engine`: what runs the recognizer (`ocr_core.runtime.ENGINES`); `precision`: its first
        reading's (`ocr_core.quantized.PRECISIONS`: int8 needs a weights file with int8 ranges).
        Without `weights`, an int8 reading loads `DEFAULT_INT8_WEIGHTS`, an fp32 one
        `DEFAULT_WEIGHTS`."""
        vnni = cpu_has_vnni()                     # read once: the file, the precision and the tag need it
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        if not weights and resolve_precision(precision, engine, has_ranges=True, vnni=vnni) == "int8":
            if DEFAULT_INT8_WEIGHTS.exists():
                path = DEFAULT_INT8_WEIGHTS
            elif precision == "int8":
                raise FileNotFoundError(f"the shipped int8 weights {DEFAULT_INT8_WEIGHTS} are missing")
            else:
                logger.warning("the shipped int8 weights %s are missing: reading in fp32", DEFAULT_INT8_WEIGHTS)
        if threads:
            # One intra-op thread per worker process: torch's spinning OpenMP collapses when
            # several busy processes share the cores (docs/facts.md §6).
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        data = path.read_bytes()      # read once: loaded and hashed
        model, meta = load_crnn(data)
        charset = Charset(list(meta["charset"]))
        assert len(charset) == model.cfg.num_classes, "charset does not match the model head"
        # The version names the exact weights: a retrained file gives a new key namespace upstream.
        digest = hashlib.sha256(data).hexdigest()[:12]
        version = f"{meta.get('version', 'dev')}.{PIPELINE_VERSION}-{digest}"
        ranges = meta.get("int8", {}).get("ranges")
        # int8 readings differ from fp32 ones (and between CPUs): the precision is in the version.
        precision = resolve_precision(precision, engine, ranges is not None, vnni=vnni)
        version += precision_tag(precision, vnni=vnni)
        det = None
        if detector:
            det_data = (DEFAULT_DETECTOR_WEIGHTS if detector is True else Path(detector)).read_bytes()
            det = TextDetector.load(det_data, engine=engine, threads=threads)
            # The detector changes what pages read as, so it is part of the version (and of the
            # cache key namespace upstream).
            version += "-db" + hashlib.sha256(det_data).hexdigest()[:8]
        logger.info("model loaded path=%s version=%s ms=%.0f", path, version, (time.perf_counter() - t0) * 1e3)
        predictor = cls(model, charset, name=meta.get("name", "crnn"), version=version, engine=engine,
                        threads=threads, detector=det, int8_ranges=ranges if precision == "int8" else None)
        predictor.weights_path = path
        return predictor

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
        return self._recognize(crops)[0]

    def _recognize(self, crops: list[np.ndarray]) -> tuple[list[Decoded], list[np.ndarray | None]]:
        """`recognize`, and for each crop the second look will read from its map
        (`_second_look_kind`) that CNN map (384 x 3 x W/4, W its width had it been read alone) for
        `_read_fine`, else None: the maps of a page's other lines would hold ~1 MB per 1,000
        columns for nothing."""
        prepared = [prepare_line(c) for c in crops]                   # 3 x 48 x W_i each
        order = sorted(range(len(prepared)), key=lambda i: prepared[i].shape[2])
        results: list[Decoded | None] = [None] * len(prepared)
        maps: list[np.ndarray | None] = [None] * len(prepared)
        batch: list[int] = []

        def flush() -> None:
            if not batch:
                return
            x, steps = batch_lines([prepared[i] for i in batch])      # N x 3 x 48 x W, valid steps
            ids, lp, cols = self.runner(x)               # N x T each: the greedy path; N x 384 x 3 x W/4
            for j, i in enumerate(batch):
                d = results[i] = collapse_path(ids[j, : steps[j]], lp[j, : steps[j]], self.charset)
                if _second_look_kind(d) == "map":
                    maps[i] = cols[j, :, :, : batch_width([prepared[i].shape[2]]) // 4].copy()
            batch.clear()

        for i in order:
            w = prepared[i].shape[2]
            if batch and (len(batch) + 1) * batch_width([w]) > MAX_BATCH_COLUMNS:
                flush()
            # Keep widths within 1.5x inside a batch: padding changes what the CNN's squeeze-excite
            # pools over and what the BiLSTM sees.
            if batch and w > 1.5 * batch_width([prepared[batch[0]].shape[2]]):
                flush()
            batch.append(i)
        flush()
        return [r for r in results if r is not None], maps

    def read(self, image, *, single_line: bool = False, finder: str = "auto", orient: bool = True,
             deskew: bool = True) -> OcrResult:
        """Read a PIL image or an H x W x 3 uint8 RGB array; lines come back in reading order.

        `finder`: "auto" sends photos to the learned detector and the rest to the classical
        finder; "classical" or "learned" force one (for comparisons). `orient`: find which way up
        a page is (0/90/180/270, `ocr_core.orientation`) and read it upright; boxes stay in the
        image's own coordinates either way. `deskew`: undo a document's tilt of up to ~10 degrees
        before the classical finder cuts it into lines (`ocr_core.skew`)."""
        if finder not in FINDERS:
            raise ValueError(f"finder must be one of {', '.join(FINDERS)}, not {finder!r}")
        if finder == "learned" and self.detector is None:
            raise ValueError("no text detector loaded")
        t0 = time.perf_counter()
        rgb = _as_rgb_array(image)
        h, w = rgb.shape[:2]
        timings: dict[str, float] = {}
        rotation = 0
        flipped: set[int] = set()     # lines read turned by 180 degrees on an upright page
        if single_line:
            finder = "single-line"
            t_rec = time.perf_counter()
            decoded, columns = self._recognize([rgb])
            page = _Page([whole_image_line(rgb)], [rgb], decoded, np.eye(3), columns=columns)
            timings["recognize"] = (time.perf_counter() - t_rec) * 1e3
            self._second_look(page, timings)
        else:
            if finder == "auto":
                # Flat-background share does not change when a page turns: decide once.
                finder = "learned" if self.detector is not None and looks_like_photo(rgb) else "classical"
            found = None
            if orient:
                t_or = time.perf_counter()
                # Lines running down the image: turn it a quarter clockwise; if it was the other
                # quarter, the text now reads upside down and the check below turns it further.
                if finder == "learned":
                    assert self.detector is not None
                    found = self.detector.detect(rgb)
                    rotation = 90 if boxes_run_down([d.quad for d in found]) else 0
                else:
                    rotation = 90 if lines_run_down(rgb) else 0
                timings["orientation"] = (time.perf_counter() - t_or) * 1e3
            page = self._read_page(turn(rgb, rotation), finder, timings, found=None if rotation else found,
                                   deskew=deskew)
            if orient and _unsure(page.decoded):
                t_or = time.perf_counter()
                flip = self._reads_better_flipped(page.crops, page.decoded)
                timings["orientation"] = timings.get("orientation", 0.0) + (time.perf_counter() - t_or) * 1e3
                if flip:
                    rotation = (rotation + 180) % 360
                    page = self._read_page(turn(rgb, rotation), finder, timings, deskew=deskew)
                if rotation in (90, 270) and _unsure(page.decoded):
                    # The glyph geometry said "turned", yet neither quarter reads well (texture
                    # on a photo can mislead it): keep the page as uploaded if that reads surer.
                    as_uploaded = self._read_page(rgb, finder, timings, found=found, deskew=deskew)
                    if _mean_char_confidence(as_uploaded.decoded) > _mean_char_confidence(page.decoded):
                        rotation = 0
                        page = as_uploaded
            if orient:
                flipped = self._flip_upside_down_lines(page, timings)
            # After the orientation is settled: lines of a page read the wrong way up are all
            # unsure, and stretching them would only double the cost of finding that out.
            self._second_look(page, timings)
        t_end = time.perf_counter()
        # From the pixels the lines were found on (turned upright, and deskewed) to the upload's.
        back = to_upload(rotation, w, h) @ page.to_page
        moved = bool(rotation) or page.skew != 0.0
        out: list[OcrLine] = []
        for i, (ln, crop, d) in enumerate(zip(page.lines, page.crops, page.decoded)):
            text = d.text.strip()
            if not text:
                continue
            if not single_line and sum(d.char_confidences) / len(d.char_confidences) < MIN_PAGE_CHAR_CONFIDENCE:
                continue
            to_view = (np.array(ln.to_image).reshape(3, 3) if ln.to_image is not None
                       else translation(ln.box[0], ln.box[1]))
            ln_polygon = ln.polygon
            if i in flipped:
                # read turned by 180 degrees: the crop's (x, y) was (w - x, h - y), and the text's
                # top-left corner is the box's bottom-right
                ch, cw = crop.shape[:2]
                to_view = to_view @ np.array([[-1, 0, cw], [0, -1, ch], [0, 0, 1]], np.float64)
                ln_polygon = ln.polygon[2:] + ln.polygon[:2]
            words = word_boxes(d.text, d.char_confidences, d.char_steps, d.num_steps, crop, back @ to_view)
            if moved:
                polygon, box = polygon_and_box(apply(back, np.array(ln_polygon, np.float64)))
            else:
                polygon, box = ln_polygon, ln.box
            out.append(OcrLine(text=text, confidence=d.confidence, box=box, polygon=polygon,
                               char_confidences=d.char_confidences, words=tuple(words),
                               visual_row=ln.visual_row, cell=ln.cell))
        return OcrResult(
            text=page_text(out), lines=out, width=w, height=h,
            elapsed_ms=(t_end - t0) * 1e3, timings_ms=timings, finder=finder, rotation=rotation,
            skew=page.skew,
        )

    def _read_page(self, rgb: np.ndarray, finder: str, timings: dict[str, float], *,
                   found: list | None = None, deskew: bool = True) -> _Page:
        """Find the lines of an upright page with the named finder (the detector's `found`, when
        already made on this image) and recognize them. The classical finder gets the page
        deskewed first (`ocr_core.skew`); the detector finds tilted lines itself."""
        t_lines = time.perf_counter()
        skew, to_page = 0.0, np.eye(3)
        if finder == "learned":
            assert self.detector is not None
            pairs = self.detector.find_lines(rgb, found)
            lines, crops = [ln for ln, _ in pairs], [c for _, c in pairs]
        else:
            skew = estimate_skew(rgb) if deskew else 0.0
            if skew:
                rgb, to_page = deskewed(rgb, skew)
            t_found = time.perf_counter()
            timings["deskew"] = timings.get("deskew", 0.0) + (t_found - t_lines) * 1e3
            t_lines = t_found
            lines = find_lines(rgb)
            crops = [crop_line(rgb, ln) for ln in lines]
        t_rec = time.perf_counter()
        decoded, columns = self._recognize(crops) if crops else ([], [])
        t_end = time.perf_counter()
        timings["lines"] = timings.get("lines", 0.0) + (t_rec - t_lines) * 1e3
        timings["recognize"] = timings.get("recognize", 0.0) + (t_end - t_rec) * 1e3
        return _Page(lines, crops, decoded, to_page, skew, columns)

    def _read_again(self, page: _Page, indices: list[int], change: Callable[[np.ndarray], np.ndarray], *,
                    margin: float = 0.0, keep_crop: bool = False) -> list[int]:
        """Read the page's crops at `indices` again, each changed by `change`, and keep in place
        the new readings that are confident (`UPRIGHT_CONFIDENCE`) and surer than the old ones by
        more than `margin`, with the changed crop and its map unless `keep_crop`; returns the
        indices kept."""
        changed = [change(page.crops[i]) for i in indices]
        decoded, columns = self._recognize(changed)
        kept = []
        for i, crop, d, cols in zip(indices, changed, decoded, columns):
            if _better(d, page.decoded[i], margin):
                page.decoded[i] = d
                if not keep_crop:
                    page.crops[i], page.columns[i] = crop, cols
                kept.append(i)
        return kept

    def _read_fine(self, cols: np.ndarray, steps: int) -> Decoded:
        """A line read again from its first reading's CNN map (384 x 3 x W/4) and valid `steps`, at
        twice the steps: only the BiLSTM and the classifier run (`ocr_core.runtime.FinePath`).
        The reading's steps cover the crop evenly, as the first reading's do, so word boxes map
        to the same pixels."""
        ids, lp = self.runner.fine(cols[None])                  # 1 x (W/4 - 1) each
        valid = 2 * steps - 1                                   # windows inside the line's own columns
        return collapse_path(ids[0, :valid], lp[0, :valid], self.charset)

    def _flip_upside_down_lines(self, page: _Page, timings: dict[str, float]) -> set[int]:
        """Lines upside down on an upright page (a label stuck on the wrong way): each line that
        reads unsure is read again turned by 180 degrees and kept turned when that reads clearly
        surer and confident. Replaces those crops and readings in place; returns their indices."""
        t0 = time.perf_counter()
        unsure = [i for i, d in enumerate(page.decoded)
                  if d.char_confidences and _mean_char_confidence([d]) < LINE_FLIP_CONFIDENCE]
        if not unsure:
            return set()
        flipped = set(self._read_again(page, unsure, lambda c: np.ascontiguousarray(c[::-1, ::-1]),
                                       margin=FLIP_MARGIN))
        timings["orientation"] = timings.get("orientation", 0.0) + (time.perf_counter() - t0) * 1e3
        return flipped

    def _second_look(self, page: _Page, timings: dict[str, float]) -> None:
        """Read each crowded unsure line again stretched in width (`SECOND_LOOK_STRETCH`), and each
        very crowded sure one again at twice the steps from its CNN map (`_read_fine`); keep the
        second reading when it is surer and confident, in place. The crop itself stays: a reading's
        steps cover its crop evenly either way, so word boxes map to the same pixels."""
        kinds = [_second_look_kind(d) for d in page.decoded]
        crowded = [i for i, k in enumerate(kinds) if k == "map"]
        unsure = [i for i, k in enumerate(kinds) if k == "stretch"]
        if not crowded and not unsure:
            return
        t0 = time.perf_counter()
        # Only a confident second reading replaces the first: stretched, a wide CJK glyph can read
        # as two (碱性 → 碱性性) and texture as text, each a little surer than before.
        for i in crowded:
            cols = page.columns[i]
            assert cols is not None, "_recognize keeps the map of each line read from its map"
            d = self._read_fine(cols, page.decoded[i].num_steps)
            if _better(d, page.decoded[i]):
                page.decoded[i] = d
        if unsure:
            self._read_again(page, unsure, lambda c: stretch_width(c, SECOND_LOOK_STRETCH), keep_crop=True)
        timings["second_look"] = timings.get("second_look", 0.0) + (time.perf_counter() - t0) * 1e3

    def _reads_better_flipped(self, crops: list[np.ndarray], decoded: list) -> bool:
        """Read the page's longest lines turned by 180 degrees: do they read clearly surer?"""
        longest = sorted(range(len(crops)), key=lambda i: -crops[i].shape[1] / max(1, crops[i].shape[0]))
        sample = longest[:FLIP_SAMPLE_LINES]
        flipped = self.recognize([np.ascontiguousarray(crops[i][::-1, ::-1]) for i in sample])
        as_is = _mean_char_confidence([decoded[i] for i in sample])
        return _mean_char_confidence(flipped) > as_is + FLIP_MARGIN


def page_text(lines: list[OcrLine]) -> str:
    """Lines in reading order, one per text line; lines side by side on one visual row (a table's
    cells, a label and its value) joined by a tab."""
    parts: list[str] = []
    for i, ln in enumerate(lines):
        if i:
            same_row = ln.visual_row is not None and ln.visual_row == lines[i - 1].visual_row
            parts.append("\t" if same_row else "\n")
        parts.append(ln.text)
    return "".join(parts)


def _mean_char_confidence(decoded: list) -> float:
    confs = [c for d in decoded for c in d.char_confidences]
    return float(np.mean(confs)) if confs else 0.0


def _crowded(d: Decoded) -> bool:
    """Characters on at least `SECOND_LOOK_CROWDED` of the reading's steps."""
    return bool(d.char_confidences) and len(d.char_steps) >= SECOND_LOOK_CROWDED * d.num_steps


def _second_look_kind(d: Decoded) -> str | None:
    """How the second look reads a line again: "stretch" (unsure, and its characters took at least
    `SECOND_LOOK_DENSITY` of its steps: through the CNN again, stretched), "map" (sure but
    `_crowded`: from its first reading's CNN map at twice the steps), or None (not again)."""
    if not d.char_confidences:
        return None
    if _mean_char_confidence([d]) < SECOND_LOOK_CONFIDENCE and len(d.char_steps) >= SECOND_LOOK_DENSITY * d.num_steps:
        return "stretch"
    return "map" if _crowded(d) else None


def _better(new: Decoded, old: Decoded, margin: float = 0.0) -> bool:
    """Whether a second reading replaces the first: confident (`UPRIGHT_CONFIDENCE`) and surer
    than the first by more than `margin`."""
    conf = _mean_char_confidence([new])
    return conf >= UPRIGHT_CONFIDENCE and conf > _mean_char_confidence([old]) + margin


def _unsure(decoded: list) -> bool:
    """A page reading whose characters are on average not confident: maybe upside down."""
    return bool(decoded) and _mean_char_confidence(decoded) < UPRIGHT_CONFIDENCE


def _as_rgb_array(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return np.ascontiguousarray(to_rgb_array(image))
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or an ndarray, got {type(image).__name__}")
    return np.asarray(image.convert("RGB"))
