"""Held-out synthetic lines: CER of one or more recognizer weights on the same lines, read end to
end one line at a time (`Predictor.read(..., single_line=True)`: second look and all), never the
dev sets.

    .venv/bin/python bench/synthetic_lines.py --fonts F --ingredients I --seed 5151 --lines 800 \\
        --weights ocr_core/weights/crnn.pt var/train/crnn.pt
    .venv/bin/python bench/synthetic_lines.py ... --seed 7171 --lines 300 --clip-keep 0.5,0.75

Lines come from the training corpus sampler and renderer (`ocr_core.train.corpus`,
`ocr_core.train.render`: every augmentation) with a seed no training run used; with `--clip-keep`
every line is cut through its glyphs as `distill features --clip` cuts them (`distill.clip_line`),
keeping that share of the ink's height. The same lines for every weights file; unlike `distill
features`, no line is left out for its width or its CTC length. Prints CER (the dev sets' rule) and
the line accuracy per weights file. Needs the training fonts and ingredients (`python -m
ocr_core.train.fonts --out DIR`, `python -m ocr_core.train.corpus --out FILE`, or var/train).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ocr_core import Predictor  # noqa: E402
from ocr_core.evaluate import char_errors  # noqa: E402
from ocr_core.train.distill import share_range, synthetic_lines  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fonts", type=Path, required=True)
    p.add_argument("--ingredients", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True, help="a seed no training run used")
    p.add_argument("--lines", type=int, default=800)
    p.add_argument("--clip-keep", type=share_range, default=None, metavar="LO,HI")
    p.add_argument("--weights", type=Path, nargs="+", required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    predictors = [Predictor.load(w, threads=args.threads, detector=False) for w in args.weights]
    lines = synthetic_lines(args.fonts, args.ingredients, args.seed, args.lines, args.clip_keep)
    print(f"{len(lines)} lines, seed {args.seed}, clip keep {args.clip_keep}")
    for path, pr in zip(args.weights, predictors):
        errs = chars = exact = 0
        for crop, text in lines:
            e, n = char_errors(text, pr.read(crop, single_line=True).text)
            errs, chars, exact = errs + e, chars + n, exact + (e == 0)
        print(f"{str(path):50s} CER {100 * errs / chars:6.2f}%  ({errs}/{chars})  "
              f"line acc {100 * exact / len(lines):5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
