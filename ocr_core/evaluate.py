"""Measure the recognizer on the dev sets: CER, line accuracy and latency per subset.

    python -m ocr_core.evaluate ../shared/eval [--sets render,real] [--weights W] [--json out.json]

Scoring follows `eval/README.md` (and its `score.py`): NFKC, whitespace runs collapsed and trimmed,
spaces next to CJK characters or full-width punctuation dropped; CER = total edit distance / total
reference length over a subset. A page is scored on its lines joined by a space, in the order we
output them. Latency covers decoding the file, preprocessing, line finding and recognition, one image
at a time, on `--threads` torch threads (1 by default, as each server worker runs).

Never tune on these sets: they stand for images we have never seen.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

_CJK = r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def normalise(s: str) -> str:
    s = unicodedata.normalize("NFKC", s)
    s = re.sub(r"\s+", " ", s).strip()
    return re.sub(rf"(?<={_CJK}) | (?={_CJK})", "", s)  # spaces next to CJK carry no meaning


def levenshtein(a: str, b: str) -> int:
    try:
        from rapidfuzz.distance import Levenshtein
    except ImportError:  # evaluation without the train/test extras: slower, same numbers
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]
    return Levenshtein.distance(a, b)


def char_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edit distance, reference length) after normalisation: sum both over a subset for its CER."""
    r, h = normalise(ref), normalise(hyp)
    return levenshtein(r, h), max(1, len(r))


@dataclass
class Item:
    set: str            # render | real
    kind: str           # lines | pages
    file: Path
    ref: str
    tags: tuple[str, ...]
    rotate: int = 0     # pages: turned clockwise by this many degrees before reading (0/90/180/270,
                        # or a tilt of a few degrees, `transformed`)


@dataclass
class Scored:
    item: Item
    hyp: str
    errors: int
    length: int
    ms: float


@dataclass
class Subset:
    name: str
    scored: list[Scored] = field(default_factory=list)

    def summary(self) -> dict:
        errs = sum(s.errors for s in self.scored)
        chars = sum(s.length for s in self.scored)
        ms = sorted(s.ms for s in self.scored)
        return {
            "subset": self.name, "items": len(self.scored),
            "cer": errs / max(1, chars),
            "line_acc": sum(s.errors == 0 for s in self.scored) / max(1, len(self.scored)),
            "median_ms": statistics.median(ms) if ms else 0.0,
            "p95_ms": ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))] if ms else 0.0,
        }


def load_items(root: Path, sets: list[str]) -> list[Item]:
    items: list[Item] = []
    if "render" in sets:
        labels = json.loads((root / "render" / "labels.json").read_text(encoding="utf-8"))
        for ln in labels["lines"]:
            lang = "zh" if _CJK_RE.search(ln["text"]) else "en"
            tags = ("camera" if ln["camera"] else "clean", "dark" if ln["dark"] else "light", lang)
            items.append(Item("render", "lines", root / "render" / ln["file"], ln["text"], tags))
        for pg in labels["pages"]:
            items.append(Item("render", "pages", root / "render" / pg["file"], " ".join(pg["lines"]),
                              ("camera" if pg["camera"] else "clean",)))
    if "real" in sets:
        labels = json.loads((root / "real" / "labels.json").read_text(encoding="utf-8"))
        for ln in labels["lines"]:
            items.append(Item("real", "lines", root / "real" / ln["file"], ln["text"], (ln["lang"], ln["kind"])))
        for pg in labels["pages"]:
            tags = (pg["lang"], pg["layout"], "two-column" if pg["layout"] == "multi-column" else "one-column")
            items.append(Item("real", "pages", root / "real" / pg["file"], " ".join(pg["lines"]), tags))
    return items


def limit_items(items: list[Item], n: int) -> list[Item]:
    """The first n items of each (set, kind), in order: a quick look at every subset."""
    seen: dict[tuple[str, str], int] = {}
    kept = []
    for it in items:
        seen[(it.set, it.kind)] = seen.get((it.set, it.kind), 0) + 1
        if seen[(it.set, it.kind)] <= n:
            kept.append(it)
    return kept


# Subsets reported per (set, kind): (name, tag it needs or None for all).
SUBSETS: dict[tuple[str, str], list[tuple[str, str | None]]] = {
    ("render", "lines"): [("all", None), ("clean", "clean"), ("camera", "camera"), ("dark", "dark"),
                          ("zh", "zh"), ("en", "en")],
    ("render", "pages"): [("all", None), ("clean", "clean"), ("camera", "camera")],
    ("real", "lines"): [("all", None), ("zh", "zh"), ("en", "en")],
    ("real", "pages"): [("zh", "zh"), ("two-column", "two-column")],
}


def transformed(rgb: Any, rotate: int) -> Any:
    """A dev page as a test variant: turned by a multiple of 90 degrees (a scan fed sideways), or
    tilted by a few (positive: clockwise, lines running down to the right; a skewed scan)."""
    from ocr_core.orientation import turn
    from ocr_core.skew import tilt

    return turn(rgb, rotate) if rotate % 90 == 0 else tilt(rgb, float(rotate))


def rotated(items: list[Item], rotations: list[int]) -> list[Item]:
    """Each page once per rotation (lines are left as they are): pages scanned sideways or upside down."""
    out = []
    for it in items:
        for r in rotations if it.kind == "pages" else [0]:
            out.append(Item(it.set, it.kind, it.file, it.ref, it.tags, r))
    return out


def evaluate(predictor, items: list[Item], *, progress: bool = False, finder: str = "auto",
             orient: bool = True, deskew: bool = True) -> list[Scored]:
    import numpy as np

    from ocr_core.images import load_image

    out: list[Scored] = []
    for n, item in enumerate(items, 1):
        t0 = time.perf_counter()
        image = load_image(item.file.read_bytes())
        t_turn = time.perf_counter()
        if item.rotate:   # preparing the test image is not the reader's time
            image = transformed(np.asarray(image), item.rotate)  # type: ignore[assignment]  # read takes arrays too
        t_read = time.perf_counter()
        result = predictor.read(image, single_line=item.kind == "lines", finder=finder, orient=orient,
                                deskew=deskew)
        ms = (time.perf_counter() - t_read + t_turn - t0) * 1e3
        hyp = " ".join(ln.text for ln in result.lines)
        errors, length = char_errors(item.ref, hyp)
        out.append(Scored(item, hyp, errors, length, ms))
        if progress and n % 50 == 0:
            print(f"  {n}/{len(items)}", file=sys.stderr, flush=True)
    return out


def summarise(scored: list[Scored]) -> list[dict]:
    rows = []
    for rot in sorted({s.item.rotate for s in scored}):
        suffix = f" rot{rot}" if rot else ""
        for (set_name, kind), subsets in SUBSETS.items():
            for name, tag in subsets:
                sub = Subset(f"{set_name} {kind} {name}{suffix}",
                             [s for s in scored if s.item.set == set_name and s.item.kind == kind
                              and s.item.rotate == rot and (tag is None or tag in s.item.tags)])
                if sub.scored:
                    rows.append(sub.summary())
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'subset':<28} {'items':>5} {'CER':>7} {'line acc':>8} {'median ms':>9} {'p95 ms':>8}"]
    for r in rows:
        lines.append(f"{r['subset']:<28} {r['items']:>5} {r['cer'] * 100:>6.2f}% {r['line_acc'] * 100:>7.1f}% "
                     f"{r['median_ms']:>9.1f} {r['p95_ms']:>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ocr_core.predictor import FINDERS, Predictor
    from ocr_core.quantized import DEFAULT_PRECISION, PRECISIONS

    p = argparse.ArgumentParser(prog="python -m ocr_core.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path, help="the dev sets' folder (holds render/ and real/)")
    p.add_argument("--sets", default="render,real")
    p.add_argument("--kinds", default="lines,pages")
    p.add_argument("--weights", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="at most N items per set and kind (quick looks)")
    p.add_argument("--json", type=Path, help="also write the summary and every item's output here")
    p.add_argument("--errors", type=int, default=0, help="print the N worst items")
    p.add_argument("--rotate", default="0",
                   help="pages: also read each turned clockwise by these angles, e.g. 0,90,180,270 "
                        "(other values: tilted by that many degrees)")
    p.add_argument("--no-orient", action="store_true", help="read pages as uploaded (no orientation step)")
    p.add_argument("--no-deskew", action="store_true", help="find lines on tilted documents as they are")
    p.add_argument("--finder", choices=FINDERS, default="auto",
                   help="line finder for pages: photos to the learned detector (auto), or one forced")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="the first reading's precision (auto: int8 on CPUs with VNNI, weights permitting)")
    args = p.parse_args(argv)

    items = [it for it in load_items(args.eval_dir, args.sets.split(",")) if it.kind in args.kinds.split(",")]
    if args.limit:
        items = limit_items(items, args.limit)
    items = rotated(items, [int(r) for r in args.rotate.split(",")])
    predictor = Predictor.load(args.weights, threads=args.threads, precision=args.precision)
    predictor.read(_warmup_image(), single_line=True)  # first call pays one-off allocations
    scored = evaluate(predictor, items, progress=True, finder=args.finder, orient=not args.no_orient,
                      deskew=not args.no_deskew)
    rows = summarise(scored)
    print(f"model {predictor.model_name} {predictor.model_version}, {args.threads} thread(s), finder {args.finder}")
    print(format_table(rows))
    if args.errors:
        for s in sorted(scored, key=lambda s: s.errors / s.length, reverse=True)[: args.errors]:
            print(f"{s.errors}/{s.length} {s.item.file.name}\n  ref: {s.item.ref}\n  hyp: {s.hyp}")
    if args.json:
        args.json.write_text(json.dumps({
            "model": {"name": predictor.model_name, "version": predictor.model_version},
            "summary": rows,
            "items": [{"file": str(s.item.file), "ref": s.item.ref, "hyp": s.hyp, "errors": s.errors,
                       "length": s.length, "ms": round(s.ms, 2)} for s in scored],
        }, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


def _warmup_image():
    import numpy as np

    img = np.full((32, 128, 3), 255, dtype=np.uint8)
    img[12:20, 10:118] = 0
    return img


if __name__ == "__main__":
    sys.exit(main())
