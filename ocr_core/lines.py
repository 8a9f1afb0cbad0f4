"""Find text lines on a page (documents, receipts, screenshots) with classical OpenCV.

binarise (adaptive threshold, dark mode aware) → estimate the glyph height → take table rules
out of the ink → smear characters horizontally into line blobs (never across a vertical rule) →
connected components → each box widened over the line's own small marks at its ends (a dash, an
ellipsis, a comma: too small or flat to pass as glyphs) → boxes padded by 15 % of the line height,
in reading order (columns left to right, lines top to bottom within a column; a row's pieces are
joined unless a vertical rule parts them).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_FRACTION = 0.15   # the padding the recognizer was trained with
# Ink left out of the lines that is at least this tall (in glyph heights) is a table rule, a frame
# or a photo's edge, not a mark of the line: a line's box never grows over it.
RULE_HEIGHT = 0.8
# A mark of a line (punctuation too small to pass as a glyph: a dash, an ellipsis, a full stop) is
# at most this wide, in glyph heights, whether it sits between two glyphs or at the line's end.
MARK_WIDTH = 2.5
# A table rule (or a frame, an underline) is a straight run of ink at least this long and at most
# this thick, in glyph heights. Glyphs that touch one become part of it: one component as big as
# the table, which the glyph filter drops with every character touching a rule (the last glyph of
# a tightly ruled cell, the descenders over an underline). The thickness bound keeps a large
# heading's own strokes out of it.
RULE_LENGTH = 4.0
RULE_THICKNESS = 0.3


@dataclass(frozen=True)
class TextLine:
    box: tuple[int, int, int, int]                  # x, y, w, h (padded, clipped to the image)
    polygon: tuple[tuple[int, int], ...]            # 4 corners clockwise from top-left
    # How the crop the recognizer reads maps back to the image: a row-major 3 x 3 projective
    # transform from crop pixels to image pixels (the detector's straightened crops), or None for
    # a crop cut straight out of `box` (a translation).
    to_image: tuple[float, ...] | None = None
    # Lines sharing `visual_row` sit side by side on one row of the page (a table's cells, a label
    # and its value): the page text joins them with a tab. `cell` is (row, column) inside the table
    # the line belongs to, when the layout analysis found one.
    visual_row: int | None = None
    cell: tuple[int, int] | None = None


def _polygon(x: int, y: int, w: int, h: int) -> tuple[tuple[int, int], ...]:
    return ((x, y), (x + w, y), (x + w, y + h), (x, y + h))


def whole_image_line(rgb: np.ndarray) -> TextLine:
    h, w = rgb.shape[:2]
    return TextLine((0, 0, w, h), _polygon(0, 0, w, h))


def crop_line(rgb: np.ndarray, line: TextLine) -> np.ndarray:
    x, y, w, h = line.box
    return rgb[y:y + h, x:x + w]


def _dark_mode(gray: np.ndarray) -> bool:
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return bool(np.median(border) < 128)


def _ink_mask(gray: np.ndarray, dark_mode: bool) -> np.ndarray:
    """Binary mask (255) of ink darker than its surroundings, or lighter in dark mode."""
    if dark_mode:
        gray = 255 - gray
    block = max(15, (min(gray.shape) // 40) | 1)
    mask = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 12)
    return mask


def _glyphs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected components of a mask: labels, stats (background row dropped), plausible glyphs."""
    H, W = mask.shape
    _, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    comps = stats[1:]
    hs, ws = comps[:, cv2.CC_STAT_HEIGHT], comps[:, cv2.CC_STAT_WIDTH]
    plausible = (hs >= 6) & (hs < H * 0.5) & (ws < W * 0.5) & (comps[:, cv2.CC_STAT_AREA] >= 12)
    return lab, comps, plausible


def find_lines(rgb: np.ndarray) -> list[TextLine]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    H, W = gray.shape
    if H < 8 or W < 8:
        return [whole_image_line(rgb)]
    # Ink of the page's dominant polarity (decided by its border), and, for photos, the opposite
    # polarity too: a white label on dark cloth has dark text although its border is dark. The
    # wrong polarity of a text line is one big connected background and fails the glyph test.
    # Polarity: the border says dark mode or not, but a photo of a white label on dark cloth has a
    # dark border and dark text. Of the two polarities, keep the one that yields more glyph-like
    # components (the wrong one sees a text line as one big background blob).
    dark = _dark_mode(gray)
    mask = _ink_mask(gray, dark)
    lab, comps, plausible = _glyphs(mask)
    other = _ink_mask(gray, not dark)
    lab2, comps2, plausible2 = _glyphs(other)
    if plausible2.sum() > 1.5 * plausible.sum():
        mask, lab, comps, plausible = other, lab2, comps2, plausible2
    if not plausible.any():
        return [whole_image_line(rgb)]
    glyph_h = float(np.median(comps[plausible, cv2.CC_STAT_HEIGHT]))
    hrule, vrule = _rules(mask, glyph_h)
    ruled = bool(hrule.any() or vrule.any())
    if ruled:
        # The page's glyphs again, with the rules taken out of the ink they touched (the glyph
        # height stays the one measured: the smear and the marks' reach are scaled by it).
        mask = np.where(hrule | vrule, 0, mask).astype(np.uint8)
        lab, comps, plausible = _glyphs(mask)
    hs, ws = comps[:, cv2.CC_STAT_HEIGHT], comps[:, cv2.CC_STAT_WIDTH]
    # Keep only character-like components; drop long rules and big blocks (tables, photos).
    keep = np.zeros(mask.shape, np.uint8)
    good = np.flatnonzero(plausible & (hs < glyph_h * 3.5) & (ws < glyph_h * 25)) + 1
    keep[np.isin(lab, good)] = 255
    # Smear horizontally by ~1.2 glyph heights so words of a line merge but columns do not.
    kw = max(3, int(glyph_h * 1.2))
    keep[np.isin(lab, _punctuation_between_glyphs(comps, plausible, keep, glyph_h, kw))] = 255
    smear = cv2.morphologyEx(keep, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (kw, 1)))
    smear = cv2.dilate(smear, cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(1, int(glyph_h * 0.15)))))
    smear[vrule] = 0        # a vertical rule parts two cells however close their text comes
    m, _, st, _ = cv2.connectedComponentsWithStats(smear, connectivity=8)
    boxes = []
    for x, y, w, h, area in st[1:]:
        if h < glyph_h * 0.4 or w < glyph_h * 0.3 or area < glyph_h * glyph_h * 0.2:
            continue
        boxes.append((int(x), int(y), int(w), int(h)))
    if not boxes:
        return [whole_image_line(rgb)]
    boxes = _split_touching(_drop_contained(_split_tall(boxes, keep, glyph_h)), keep)
    out = []
    table_rows: dict[int, int] = {}     # table id → rows seen so far
    rows = _reading_rows(boxes, rules=Rules(hrule, vrule) if ruled else None)
    marks, stops = _loose_ink(lab, comps, keep, [b for row in rows for b in row.boxes], glyph_h)
    stops |= vrule          # rules no longer belong to any component, yet a box must not grow over them
    for r, row in enumerate(rows):
        cell_row = None
        if row.table is not None:
            cell_row = table_rows.get(row.table, 0)
            table_rows[row.table] = cell_row + 1
        for k, (x, y, w, h) in enumerate(row.boxes):
            left, right = _reach(marks, stops, (x, y, w, h), kw)
            x, w = x - left, w + left + right
            pad = int(round(PAD_FRACTION * h)) + 1
            x0, y0 = max(0, x - pad), max(0, y - pad)
            x1, y1 = min(W, x + w + pad), min(H, y + h + pad)
            cell = (cell_row, row.columns[k]) if cell_row is not None and row.columns else None
            out.append(TextLine((x0, y0, x1 - x0, y1 - y0), _polygon(x0, y0, x1 - x0, y1 - y0),
                                visual_row=r, cell=cell))
    return out


def _rules(mask: np.ndarray, glyph_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical rules in an ink mask (boolean masks): straight runs at least
    RULE_LENGTH glyph heights long, where they are at most RULE_THICKNESS glyph heights thick
    (a run as thick as that is a heading's stroke or a filled block, not a rule), grown by a pixel
    on each side across the run (a rule's anti-aliased or JPEG-smeared edge would otherwise stay
    behind as a thin "glyph" beside the text)."""
    # Odd kernel sizes: OpenCV's opening with an even-sized kernel comes back a pixel off.
    length = max(8, int(RULE_LENGTH * glyph_h)) | 1
    too_thick = (max(2, int(RULE_THICKNESS * glyph_h)) + 1) | 1
    out = []
    for run, across, grow in (((length, 1), (1, too_thick), (1, 3)), ((1, length), (too_thick, 1), (3, 1))):
        straight = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, run))
        thick = cv2.morphologyEx(straight, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, across))
        thin = cv2.subtract(straight, thick)
        out.append(cv2.dilate(thin, cv2.getStructuringElement(cv2.MORPH_RECT, grow)) > 0)
    return out[0], out[1]


class Rules:
    """A page's table rules, asked about by the reading order: `parts(a, b)` says whether a
    vertical rule lies in the gap between two boxes of one row (over the rows they share), and
    `crossings(x, y0, y1)` how many horizontal rules cross column x between y0 and y1 (integral
    image and column lookups, so each question is cheap)."""

    def __init__(self, hrule: np.ndarray, vrule: np.ndarray) -> None:
        self._hrule = hrule
        self._vsum = np.pad(vrule.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)

    def parts(self, a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
        return self.vertical(a[0] + a[2], b[0], max(a[1], b[1]), min(a[1] + a[3], b[1] + b[3]))

    def vertical(self, x0: int, x1: int, y0: int, y1: int) -> bool:
        """Whether vertical rule ink lies in columns x0..x1, rows y0..y1."""
        if x1 <= x0 or y1 <= y0:
            return False
        s = self._vsum
        return bool(s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0] > 0)

    def crossings(self, x: int, y0: int, y1: int) -> int:
        return len(true_runs(self._hrule[max(0, y0):max(0, y1), x]))


def _loose_ink(lab: np.ndarray, comps: np.ndarray, keep: np.ndarray,
                boxes: list[tuple[int, int, int, int]], glyph_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Ink the glyph filter left out of the lines, split in two: small marks that may belong to a
    line's end (a dash, the dots of an ellipsis, a full stop), and what a line's box must not grow
    over (rules, frames: anything about a glyph tall or taller; and the other lines' boxes)."""
    tall = np.zeros(len(comps) + 1, bool)
    tall[1:] = comps[:, cv2.CC_STAT_HEIGHT] >= RULE_HEIGHT * glyph_h
    # A mark is at most a couple of glyphs wide (an ellipsis, a long dash); an underline or a
    # table's horizontal rule running past the line is neither a mark nor a stop.
    mark = np.zeros(len(comps) + 1, bool)
    mark[1:] = ~tall[1:] & (comps[:, cv2.CC_STAT_WIDTH] <= MARK_WIDTH * glyph_h)
    loose = (lab > 0) & (keep == 0)
    stops = loose & tall[lab]
    for x, y, w, h in boxes:
        stops[y:y + h, x:x + w] = True
    return loose & mark[lab], stops


def _reach(marks: np.ndarray, stops: np.ndarray, box: tuple[int, int, int, int], reach: int) -> tuple[int, int]:
    """How many columns left and right of a line's box its own small marks extend: the farthest
    mark within `reach` columns (the gap the smear closes between words) in the box's rows, and
    nearer to the box than to anything in `stops` across the middle of the line. Without those
    marks the recognizer drops a line's first or last character (docs/benchmarks.md, "Line ends")."""
    x, y, w, h = box
    core = slice(y + h // 4, y + max(h // 4 + 1, (3 * h) // 4))
    out = []
    for side in (-1, 1):
        # Columns outward from the box's edge: marks within `reach`, stops within twice that
        # (a stop just past `reach` still claims the marks nearer to it).
        far = slice(max(0, x - 2 * reach), x) if side < 0 else slice(x + w, x + w + 2 * reach)
        mark: np.ndarray = np.asarray(marks[y:y + h, far].any(axis=0))
        stop: np.ndarray = np.asarray(stops[core, far].any(axis=0))
        if side < 0:                        # left: scan outward from the box, right to left
            mark, stop = mark[::-1], stop[::-1]
        # A mark between this box and the next stop belongs to the nearer of the two: a dash in
        # the gap between two cells of a row is read once, by the cell it sits against.
        blocked = np.flatnonzero(stop)
        limit = min(reach, (int(blocked[0]) + 1) // 2) if len(blocked) else reach
        hits = np.flatnonzero(mark[:limit])
        out.append(int(hits[-1]) + 1 if len(hits) else 0)
    return out[0], out[1]


def _punctuation_between_glyphs(comps: np.ndarray, plausible: np.ndarray, keep: np.ndarray,
                                glyph_h: float, reach: int) -> np.ndarray:
    """Labels of marks too small to pass as glyphs (the dashes of "0--40", the dot of "1.5", a
    hyphen) that sit inside a text row with a kept glyph within `reach` on both sides.

    Without them the gap they fill splits one table cell's text into two boxes and the marks are
    never read. Specks of noise rarely have glyphs close on both sides at their own height."""
    H, W = keep.shape
    x, y = comps[:, cv2.CC_STAT_LEFT], comps[:, cv2.CC_STAT_TOP]
    w, h = comps[:, cv2.CC_STAT_WIDTH], comps[:, cv2.CC_STAT_HEIGHT]
    small = np.flatnonzero(~plausible & (h < glyph_h * 0.6) & (w < glyph_h * MARK_WIDTH)
                           & (comps[:, cv2.CC_STAT_AREA] >= 3))
    if not len(small):
        return np.zeros(0, np.int64)
    # Glyph ink reaching `reach` pixels to the right of itself, and to the left.
    right_of_glyph = cv2.dilate(keep, np.ones((1, reach), np.uint8), anchor=(reach - 1, 0)) > 0
    left_of_glyph = cv2.dilate(keep, np.ones((1, reach), np.uint8), anchor=(0, 0)) > 0
    cy = np.clip(y[small] + h[small] // 2, 0, H - 1)
    xl = np.clip(x[small] - 1, 0, W - 1)
    xr = np.clip(x[small] + w[small], 0, W - 1)
    between = right_of_glyph[cy, xl] & left_of_glyph[cy, xr]
    return small[between] + 1


def _split_tall(boxes: list[tuple[int, int, int, int]], ink: np.ndarray,
                glyph_h: float) -> list[tuple[int, int, int, int]]:
    """Split blobs that merged two or more lines, at rows with no ink."""
    out = []
    for x, y, w, h in boxes:
        if h < glyph_h * 1.8:
            out.append((x, y, w, h))
            continue
        prof = (ink[y:y + h, x:x + w] > 0).sum(axis=1)
        for start, end in true_runs(prof > max(1, 0.02 * w)):
            if end - start >= glyph_h * 0.4:
                cols = np.flatnonzero(ink[y + start:y + end, x:x + w].any(axis=0))
                out.append((x + int(cols[0]), y + start, int(cols[-1] - cols[0] + 1), end - start))
    return out


def _split_touching(boxes: list[tuple[int, int, int, int]], ink: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Split blobs holding k ≥ 2 lines whose descenders and ascenders touch (tight leading leaves
    no empty row for `_split_tall`): cut near each expected line boundary at the row with the
    least ink, but only where that row is clearly sparser than the text's rows, so one tall
    heading is never cut through its glyphs."""
    if len(boxes) < 3:
        return boxes
    line_h = float(np.median([h for _, _, _, h in boxes]))
    out = []
    for x, y, w, h in boxes:
        k = int(round(h / line_h))
        if h < 1.6 * line_h or k < 2:
            out.append((x, y, w, h))
            continue
        prof = (ink[y:y + h, x:x + w] > 0).sum(axis=1).astype(np.float32)
        prof = np.convolve(prof, np.ones(3, np.float32) / 3, mode="same")
        typical = float(np.median(prof[prof > 0])) if (prof > 0).any() else 0.0
        step = h / k
        cuts = []
        for j in range(1, k):
            lo, hi = int(j * step - 0.3 * step), int(j * step + 0.3 * step) + 1
            c = lo + int(np.argmin(prof[lo:hi]))
            if prof[c] < 0.35 * typical:
                cuts.append(c)
        if not cuts:
            out.append((x, y, w, h))
            continue
        for a, b in zip([0, *cuts], [*cuts, h]):
            sub = ink[y + a:y + b, x:x + w] > 0
            rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
            if len(rows) and rows[-1] - rows[0] + 1 >= 0.3 * line_h:
                out.append((x + int(cols[0]), y + a + int(rows[0]), int(cols[-1] - cols[0] + 1),
                            int(rows[-1] - rows[0] + 1)))
    return out


def true_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a 1-D boolean array, end exclusive."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _drop_contained(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Drop boxes lying mostly (≥ 70 %) inside a larger one: the same words would be read twice."""
    boxes = sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)
    kept: list[tuple[int, int, int, int]] = []
    for x, y, w, h in boxes:
        inside = False
        for kx, ky, kw, kh in kept:
            ix = max(0, min(x + w, kx + kw) - max(x, kx))
            iy = max(0, min(y + h, ky + kh) - max(y, ky))
            if ix * iy >= 0.7 * w * h:
                inside = True
                break
        if not inside:
            kept.append((x, y, w, h))
    return kept


@dataclass
class Row:
    """Boxes read left to right on one visual row; inside a table, each box's column index."""
    boxes: list[tuple[int, int, int, int]]
    columns: list[int] | None = None
    table: int | None = None


@dataclass
class _Tables:
    """Numbers the tables one XY-cut finds, in reading order."""
    count: int = 0

    def new(self) -> int:
        self.count += 1
        return self.count - 1


def _reading_order(boxes: list[tuple[int, int, int, int]], page_w: int, *,
                   join: bool = True) -> list[tuple[int, int, int, int]]:
    """Recursive XY-cut: columns left to right, bands top to bottom, rows inside a band.

    A vertical gutter that no box crosses splits a region into columns; where none exists (a title
    spans the columns), the region is cut at its unusually wide horizontal gaps and each band is
    ordered on its own, so a full-width heading above two columns is read before them.
    With `join`, pieces of one row split by a wide glyph gap become one box (see `_join_row`).
    """
    return [b for row in _reading_rows(boxes, join=join) for b in row.boxes]


def _reading_rows(boxes: list[tuple[int, int, int, int]], *, join: bool = True,
                  rules: Rules | None = None) -> list[Row]:
    """`_reading_order`, grouped into visual rows (with table cells' columns where a region reads
    as a table); a row's pieces are never joined across a vertical rule, and a grid of `rules`
    makes a table of columns that would otherwise read one after the other."""
    if not boxes:
        return []
    glyph_h = float(np.median([h for _, _, _, h in boxes]))
    return _xy_cut(boxes, glyph_h, depth=0, join=join, tables=_Tables(), rules=rules)


def _gaps(intervals: list[tuple[int, int]], min_gap: float) -> list[tuple[int, int]]:
    """Gaps (a, b) at least min_gap wide between the union of intervals."""
    merged: list[list[int]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(p[1], q[0]) for p, q in zip(merged, merged[1:]) if q[0] - p[1] >= min_gap]


def _xy_cut(boxes: list[tuple[int, int, int, int]], glyph_h: float, depth: int,
            join: bool = True, tables: _Tables | None = None, rules: Rules | None = None) -> list[Row]:
    tables = tables if tables is not None else _Tables()
    if len(boxes) <= 1 or depth > 8:
        return _row_groups(boxes, join, rules)
    x0 = min(b[0] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    gutters = _gaps([(x, x + w) for x, _, w, _ in boxes], max(1.0, glyph_h))
    if gutters:
        cuts = [x0] + [(a + b) / 2 for a, b in gutters] + [x1]
        cols = [[b for b in boxes if lo <= b[0] + b[2] / 2 < hi] for lo, hi in zip(cuts, cuts[1:])]
        cols[-1] += [b for b in boxes if b[0] + b[2] / 2 >= x1]
        cols = [c for c in cols if c]
        # Columns of running text are wide and hold several lines. Narrow or single-line "columns"
        # are label/value pairs and table cells: when most groups look like that, the region is a
        # form or table and reads row by row across it. A lone stray group (a page number in the
        # margin) joins its nearest text column instead of turning a page into one long table.
        def is_text(c: list) -> bool:
            return len(c) >= 2 and (max(b[0] + b[2] for b in c) - min(b[0] for b in c)) >= 0.15 * (x1 - x0)

        text_cols = [i for i, c in enumerate(cols) if is_text(c)]
        stray = [i for i in range(len(cols)) if i not in text_cols]
        if (len(text_cols) >= 2 and sum(len(cols[i]) for i in stray) <= 0.1 * len(boxes)
                and not _ruled_grid(boxes, gutters, rules)):
            merged = {i: list(cols[i]) for i in text_cols}
            for i in stray:
                merged[min(text_cols, key=lambda j: abs(j - i))].extend(cols[i])
            return [r for i in text_cols for r in _xy_cut(merged[i], glyph_h, depth + 1, join, tables, rules)]
        if len(text_cols) == 1 and len(boxes) - len(cols[text_cols[0]]) <= 0.1 * len(boxes):
            # One real column plus margin marks (page numbers, folios): the column first.
            rest = [b for i in stray for b in cols[i]]
            return (_xy_cut(cols[text_cols[0]], glyph_h, depth + 1, join, tables, rules)
                    + _row_groups(rest, join, rules))
        return _table_rows(boxes, cuts, join, tables, rules)
    gaps = _gaps([(y, y + h) for _, y, _, h in boxes], 1.0)
    if len(gaps) >= 1:
        widths = sorted(b - a for a, b in gaps)
        typical = widths[len(widths) // 2]
        # Only gaps clearly wider than the usual line spacing separate bands (headings, blocks).
        wide = [(a, b) for a, b in gaps if (b - a) >= max(1.5 * typical, 0.8 * glyph_h)] if len(gaps) > 1 \
            else [(a, b) for a, b in gaps if (b - a) >= 0.8 * glyph_h]
        if wide:
            cuts = [-1.0] + [(a + b) / 2 for a, b in wide] + [float("inf")]
            bands = [[b for b in boxes if lo <= b[1] + b[3] / 2 < hi] for lo, hi in zip(cuts, cuts[1:])]
            if len([bd for bd in bands if bd]) > 1:
                return [r for bd in bands if bd for r in _xy_cut(bd, glyph_h, depth + 1, join, tables, rules)]
    split = _split_at_blocked_gutter(boxes, glyph_h, x0, x1)
    if split is not None:
        return [r for part in split for r in _xy_cut(part, glyph_h, depth + 1, join, tables, rules)]
    return _row_groups(boxes, join, rules)


def _ruled_grid(boxes: list[tuple[int, int, int, int]], gutters: list[tuple[int, int]],
                rules: Rules | None) -> bool:
    """Whether wide columns are a ruled grid's, not running text's: every gutter holds a vertical
    rule and is crossed by at least two horizontal rules between the region's first and last
    line (rules between rows; a frame around a page or a rule under a heading does not make
    two). A grid's cells are then never joined across its vertical rules; tables ruled only
    across keep the column reading."""
    if rules is None:
        return False
    y0, y1 = min(b[1] for b in boxes), max(b[1] + b[3] for b in boxes)
    return all(rules.vertical(a, b, y0, y1) and rules.crossings((a + b) // 2, y0, y1) >= 2 for a, b in gutters)


def _split_at_blocked_gutter(boxes: list[tuple[int, int, int, int]], glyph_h: float, x0: int,
                             x1: int) -> list[list[tuple[int, int, int, int]]] | None:
    """A gutter that a few boxes cross (a line smeared across it, a caption): split there.

    Looks for the widest vertical band at least a glyph wide that at most 3 % of the boxes cross,
    with real columns (several boxes, 15 % of the width) on both sides; crossing boxes are cut at
    the gutter's centre. Returns [left, right] or None.
    """
    n = len(boxes)
    if n < 12 or x1 - x0 < 4 * glyph_h:  # only blocks of many lines: short pages have ragged lines
        return None
    cover = np.zeros(x1 - x0 + 1, np.int32)
    for x, _, w, _ in boxes:
        cover[x - x0:x - x0 + w] += 1
    low = cover <= max(1, int(0.03 * n))
    best: tuple[int, int] | None = None
    for start, end in true_runs(low):
        a, b = x0 + start, x0 + end
        if (end - start >= glyph_h and (best is None or end - start > best[1] - best[0])
                and a - x0 >= 0.15 * (x1 - x0) and x1 - b >= 0.15 * (x1 - x0)):
            best = (a, b)
    if best is None:
        return None
    g = (best[0] + best[1]) // 2
    left, right = [], []
    for x, y, w, h in boxes:
        if x + w <= g:
            left.append((x, y, w, h))
        elif x >= g:
            right.append((x, y, w, h))
        else:
            if g - x >= glyph_h * 0.5:
                left.append((x, y, g - x, h))
            if x + w - g >= glyph_h * 0.5:
                right.append((g, y, x + w - g, h))
    if min(len(left), len(right)) < 0.25 * n:
        return None
    # Both sides must run down most of the block, as columns do (not a few long lines on one side).
    y0, y1 = min(b[1] for b in boxes), max(b[1] + b[3] for b in boxes)
    for side in (left, right):
        if max(b[1] + b[3] for b in side) - min(b[1] for b in side) < 0.6 * (y1 - y0):
            return None
    return [left, right]


def _rows(boxes: list[tuple[int, int, int, int]], join: bool = True) -> list[tuple[int, int, int, int]]:
    """Top to bottom; boxes whose vertical centres overlap form one row, read left to right."""
    return [b for row in _row_groups(boxes, join) for b in row.boxes]


def _row_groups(boxes: list[tuple[int, int, int, int]], join: bool = True,
                rules: Rules | None = None) -> list[Row]:
    """`_rows`, one `Row` per visual row."""
    boxes = sorted(boxes, key=lambda b: b[1] + b[3] / 2)
    rows: list[list[tuple[int, int, int, int]]] = []
    for b in boxes:
        cy = b[1] + b[3] / 2
        if rows:
            last = rows[-1]
            ly0 = min(r[1] for r in last)
            ly1 = max(r[1] + r[3] for r in last)
            if ly0 <= cy <= ly1:
                last.append(b)
                continue
        rows.append([b])
    ordered = [sorted(row, key=lambda r: r[0]) for row in rows]
    return [Row(_join_row(row, rules) if join else row) for row in ordered]


def _table_rows(boxes: list[tuple[int, int, int, int]], cuts: list[float], join: bool,
                tables: _Tables, rules: Rules | None = None) -> list[Row]:
    """A region whose gutters split it into narrow label/value or cell columns: rows read across
    it, each box numbered by the gutter-delimited column its centre falls in. It is a table when
    at least two rows hold two or more cells."""
    rows = _row_groups(boxes, join, rules)
    if sum(len(r.boxes) >= 2 for r in rows) < 2:
        return rows
    table = tables.new()
    for r in rows:
        r.table = table
        r.columns = [max(0, sum(1 for c in cuts[1:-1] if x + w / 2 >= c)) for x, _, w, _ in r.boxes]
    return rows


def _join_row(row: list[tuple[int, int, int, int]],
              rules: Rules | None = None) -> list[tuple[int, int, int, int]]:
    """Join pieces of one row split by a wide glyph gap (full-width punctuation such as "：", wide
    word spacing): one crop reads better than fragments. Called inside a column, so gutters that
    separate columns are never bridged; nor is a vertical rule (`rules`): two ruled cells whose
    text comes close are two cells."""
    out = [row[0]]
    for x, y, w, h in row[1:]:
        px, py, pw, ph = out[-1]
        gap = x - (px + pw)
        overlap = min(py + ph, y + h) - max(py, y)
        if (gap < 1.2 * max(h, ph) and overlap >= 0.5 * min(h, ph)
                and not (rules is not None and rules.parts(out[-1], (x, y, w, h)))):
            x0, y0 = min(px, x), min(py, y)
            out[-1] = (x0, y0, max(px + pw, x + w) - x0, max(py + ph, y + h) - y0)
        else:
            out.append((x, y, w, h))
    return out
