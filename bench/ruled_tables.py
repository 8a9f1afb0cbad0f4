"""Ruled tables: cell CER with and without the classical finder taking table rules out of the ink
(`ocr_core.lines._rules`), on held-out synthetic tables (never the dev sets).

    .venv/bin/python bench/ruled_tables.py --seed 92001 --pages 60

Tables: 4-9 rows of 2-5 cells, each cell 2-10 characters from the training corpus sampler
(`ocr_core.train.corpus`, a seed no training run used) in one font the training fonts cover,
12-24 px; rules 1-2 px, in the text's colour or a lighter grey, with vertical rules in 70 % of
the tables; cells padded by 2-12 px across and only 0-4 px above and below the text, so glyphs
often touch a rule, as in low-resolution scans of forms and lab reports; 15 % light on dark; half
blurred and JPEG-compressed. Every table is read by the classical finder as shipped ("rules out")
and with no rule found ("rules kept": the finder before rules were taken out). Each line read is
given to the cell nearest its box's centre; prints the CER over the cells' texts (the dev sets'
rule) and the time. A line that merges two cells counts as errors in both.
Needs the training fonts and corpus ingredients (`python -m ocr_core.train.fonts --out DIR`,
`python -m ocr_core.train.corpus --out FILE`, or what `ocr_core.train.reproduce` left in
var/train). Results: docs/benchmarks.md, "Ruled tables".
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ocr_core.lines as lines_module  # noqa: E402
from bench.finder_ab import compare, parse_args  # noqa: E402
from ocr_core import Predictor  # noqa: E402
from ocr_core.evaluate import char_errors  # noqa: E402
from ocr_core.train.corpus import LineSampler, load_ingredients  # noqa: E402
from ocr_core.train.render import LineRenderer, load_faces  # noqa: E402

Cell = tuple[str, float, float]     # text, centre x, centre y


def synthetic_tables(predictor: Predictor, fonts: Path, ingredients: Path, seed: int,
                     n: int) -> list[tuple[np.ndarray, list[Cell]]]:
    sampler = LineSampler(load_ingredients(ingredients), predictor.charset, seed)
    faces = LineRenderer(load_faces(fonts), seed)       # only its face picking and font cache
    rng = random.Random(seed)
    tables: list[tuple[np.ndarray, list[Cell]]] = []
    while len(tables) < n:
        size = rng.randint(12, 24)
        nr, nc = rng.randint(4, 9), rng.randint(2, 5)
        texts: list[list[str]] = []
        for _ in range(nr):
            row: list[str] = []
            while len(row) < nc:
                t = sampler()[:rng.randint(2, 10)].strip()
                if t and faces.pick_face(t) is not None:
                    row.append(t)
            texts.append(row)
        fnt = [[faces.font(faces.pick_face(t).path, size) for t in row] for row in texts]  # type: ignore[union-attr]
        bbox = [[fnt[r][c].getbbox(texts[r][c]) for c in range(nc)] for r in range(nr)]
        hpad, vpad, th = rng.randint(2, 12), rng.randint(0, 4), rng.choice([1, 1, 2])
        verticals = rng.random() < 0.7
        col_w = [max(int(fnt[r][c].getlength(texts[r][c])) for r in range(nr)) + 2 * hpad for c in range(nc)]
        row_h = [max(int(b[3] - b[1]) for b in bbox[r]) + 2 * vpad for r in range(nr)]
        width, height = sum(col_w) + (nc + 1) * th + 20, sum(row_h) + (nr + 1) * th + 20
        dark = rng.random() < 0.15
        bg = rng.randint(0, 50) if dark else rng.randint(225, 255)
        fg = rng.randint(190, 255) if dark else rng.randint(0, 70)
        rule = fg if rng.random() < 0.5 else (rng.randint(90, 150) if dark else rng.randint(120, 190))
        img = Image.new("RGB", (width, height), (bg, bg, bg))
        draw = ImageDraw.Draw(img)
        cells: list[Cell] = []
        y = 10
        for r in range(nr):
            draw.rectangle([10, y, width - 11, y + th - 1], fill=(rule, rule, rule))
            y += th
            x = 10 + th
            for c in range(nc):
                t, f, b = texts[r][c], fnt[r][c], bbox[r][c]
                tw = f.getlength(t)
                tx = x + (hpad if rng.random() < 0.5 else (col_w[c] - tw) / 2)
                ty = y + vpad + (row_h[r] - 2 * vpad - (b[3] - b[1])) / 2 - b[1]
                draw.text((tx, ty), t, font=f, fill=(fg, fg, fg))
                cells.append((t, tx + tw / 2, y + row_h[r] / 2))
                x += col_w[c] + th
            y += row_h[r]
        draw.rectangle([10, y, width - 11, y + th - 1], fill=(rule, rule, rule))
        if verticals:
            x = 10
            for c in range(nc + 1):
                draw.rectangle([x, 10, x + th - 1, y + th - 1], fill=(rule, rule, rule))
                x += th + (col_w[c] if c < nc else 0)
        arr = np.asarray(img)
        if rng.random() < 0.5:
            arr = cv2.GaussianBlur(arr, (3, 3), rng.uniform(0.3, 0.8))
            _, enc = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(40, 90)])
            arr = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
        tables.append((np.ascontiguousarray(arr), cells))
    return tables


def cell_errors(predictor: Predictor, rgb: np.ndarray, cells: list[Cell]) -> tuple[int, int]:
    """Character errors and reference length over a table's cells, each line read given to the
    cell nearest its centre (rows weigh three times columns: cells are wider than tall)."""
    got: list[list[str]] = [[] for _ in cells]
    for ln in predictor.read(rgb, finder="classical").lines:
        x, y, w, h = ln.box
        i = min(range(len(cells)), key=lambda i: abs(cells[i][1] - (x + w / 2)) / 3 + abs(cells[i][2] - (y + h / 2)))
        got[i].append(ln.text)
    errors = chars = 0
    for (text, _, _), read in zip(cells, got):
        d, n = char_errors(text, " ".join(read))
        errors += d
        chars += n
    return errors, chars


def _no_rules(mask: np.ndarray, glyph_h: float) -> tuple[np.ndarray, np.ndarray]:
    empty = np.zeros(mask.shape, bool)
    return empty, empty


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, 92001, 60, argv)
    predictor = Predictor.load(threads=args.threads)
    tables = synthetic_tables(predictor, args.fonts, args.ingredients, args.seed, args.pages)
    print(f"{len(tables)} synthetic ruled tables, seed {args.seed}, classical finder, {args.threads} thread(s)")
    compare("_rules", [("rules kept", _no_rules), ("rules out", lines_module._rules)], tables,
            lambda table: cell_errors(predictor, *table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
