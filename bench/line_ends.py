"""Line ends: page CER with and without the classical finder's boxes reaching over the small marks
at a line's ends (`ocr_core.lines._reach`), on held-out synthetic pages (never the dev sets).

    .venv/bin/python bench/line_ends.py --seed 90001 --pages 120

Pages: 5-9 lines from the training corpus sampler (`ocr_core.train.corpus`, a seed no training
run used), each in one font the training fonts cover, 13-28 px, black on white or (a quarter)
light on dark, line spacing 1.4-2.2x, rendered by PIL; 30 % blurred and JPEG-compressed. Every
page is read by the classical finder as shipped ("reach") and with the boxes left as the glyphs
make them ("glyphs only"); prints page CER (the dev sets' rule) and the time.
Needs the training fonts and corpus ingredients (`python -m ocr_core.train.fonts --out DIR`,
`python -m ocr_core.train.corpus --out FILE`, or what `ocr_core.train.reproduce` left in
var/train). Results: docs/benchmarks.md, "Line ends".
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


def synthetic_pages(predictor: Predictor, fonts: Path, ingredients: Path, seed: int,
                    n: int) -> list[tuple[np.ndarray, list[str]]]:
    sampler = LineSampler(load_ingredients(ingredients), predictor.charset, seed)
    faces = LineRenderer(load_faces(fonts), seed)       # only its face picking and font cache
    rng = random.Random(seed)
    pages: list[tuple[np.ndarray, list[str]]] = []
    while len(pages) < n:
        size = rng.randint(13, 28)
        dark = rng.random() < 0.25
        bg = rng.randint(0, 50) if dark else rng.randint(225, 255)
        fg = rng.randint(190, 255) if dark else rng.randint(0, 70)
        texts: list[str] = []
        while len(texts) < rng.randint(5, 9):
            t = sampler()[:45].strip()
            if t and faces.pick_face(t) is not None:
                texts.append(t)
        drawn = []
        for t in texts:
            face = faces.pick_face(t)
            assert face is not None
            drawn.append((t, faces.font(face.path, size)))
        width = int(max(f.getlength(t) for t, f in drawn)) + 2 * rng.randint(12, 40)
        gap = rng.uniform(1.4, 2.2) * size
        img = Image.new("RGB", (width, int(len(drawn) * gap + 2 * size + 10)), (bg, bg, bg))
        draw = ImageDraw.Draw(img)
        x, y = rng.randint(10, 30), size * 0.8
        for t, f in drawn:
            draw.text((x, y), t, font=f, fill=(fg, fg, fg))
            y += gap
        arr = np.asarray(img)
        if rng.random() < 0.3:
            arr = cv2.GaussianBlur(arr, (3, 3), rng.uniform(0.3, 0.8))
            _, enc = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(50, 90)])
            arr = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
        pages.append((np.ascontiguousarray(arr), texts))
    return pages


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, 90001, 120, argv)
    predictor = Predictor.load(threads=args.threads)
    pages = synthetic_pages(predictor, args.fonts, args.ingredients, args.seed, args.pages)
    print(f"{len(pages)} synthetic pages, seed {args.seed}, classical finder, {args.threads} thread(s)")

    def page_errors(page: tuple[np.ndarray, list[str]]) -> tuple[int, int]:
        rgb, texts = page
        return char_errors(" ".join(texts), predictor.read(rgb, finder="classical").text)

    compare("_reach", [("glyphs only", lambda *a: (0, 0)), ("reach", lines_module._reach)], pages, page_errors)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
