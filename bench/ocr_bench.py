"""Our recognizer against RapidOCR and Tesseract on the same dev-set items, in the same run.

    .venv/bin/python bench/ocr_bench.py ../shared/eval [--threads 2] [--limit N]
        [--engines ours,rapidocr3,rapidocr,tesseract] [--rotate 0,90,180,270] [--sets render,real]

Items are read in blocks of `--block` (20): every engine reads the whole block, one engine after
the other, and the order rotates per block, so background load hits all engines alike. Engines
take turns per block, not per item, because onnxruntime's (and OpenMP's) worker threads keep
spinning for a while after a call: alternating engines item by item made each run while the
other's threads still held the two cores, and slowed every engine's lines by half (56 vs 36 ms
median on the same lines, docs/benchmarks.md "Session 12"); a service runs one engine per
process. Times cover the engine's call on a decoded image (file decoding is shared and excluded).
Line crops are read as single lines by every engine (RapidOCR without its detector, Tesseract in
PSM 7); pages by each engine's full pipeline. Prints CER (the dev sets' rule) and median latency
per subset and engine, then our figures as ratios to each peer's (CER ratio < 1 and time ratio < 1
mean we are better). Peers are optional (`make bench-deps` installs them); a missing one is
skipped with a note. `rapidocr3` is RapidOCR 3.10.0 (PP-OCRv6 small det + cls + rec), `rapidocr`
RapidOCR 1.4.4 (PP-OCRv4). `--rotate` also reads every page turned clockwise by those angles
(multiples of 90; other values tilt the page by that many degrees, `ocr_core.evaluate.transformed`)
(subsets "... rot90" etc.): pages scanned sideways or upside down, without an EXIF tag.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_core.evaluate import Item, char_errors, limit_items, load_items, rotated, transformed  # noqa: E402
from ocr_core.images import load_image  # noqa: E402

TESSDATA_DIRS = ["/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata"]


class Ours:
    name = "ours"

    def __init__(self, threads: int, weights: Path | None = None, precision: str = "auto") -> None:
        from ocr_core import Predictor

        self.p = Predictor.load(weights, threads=threads, precision=precision)
        print(f"ours: {self.p.model_version} ({self.p.precision})", file=sys.stderr)

    def line(self, rgb: np.ndarray) -> str:
        return self.p.read(rgb, single_line=True).text

    def page(self, rgb: np.ndarray) -> str:
        return " ".join(ln.text for ln in self.p.read(rgb).lines)


class Rapid:
    name = "rapidocr"

    def __init__(self, threads: int) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def line(self, rgb: np.ndarray) -> str:
        result, _ = self.engine(rgb[:, :, ::-1].copy(), use_det=False, use_cls=False, use_rec=True)
        return " ".join(r[0] for r in result or [])

    def page(self, rgb: np.ndarray) -> str:
        result, _ = self.engine(rgb[:, :, ::-1].copy())
        return " ".join(r[1] for r in result or [])


class Rapid3:
    """RapidOCR 3.10.0. Two engine objects: after a call without the detector, the same object
    returned empty pages in our runs (eval/README.md)."""
    name = "rapidocr3"

    def __init__(self, threads: int) -> None:
        from rapidocr import RapidOCR

        params = {"Global.log_level": "error",
                  "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                  "EngineConfig.onnxruntime.inter_op_num_threads": 1}
        self.pages = RapidOCR(params=params)
        self.lines = RapidOCR(params=params)

    def line(self, rgb: np.ndarray) -> str:
        out = self.lines(rgb[:, :, ::-1].copy(), use_det=False, use_cls=False, use_rec=True)
        return " ".join(out.txts or ())

    def page(self, rgb: np.ndarray) -> str:
        out = self.pages(rgb[:, :, ::-1].copy())
        return " ".join(out.txts or ())


class Tesseract:
    name = "tesseract"

    def __init__(self, threads: int) -> None:
        import tesserocr

        path = next((d for d in TESSDATA_DIRS if Path(d, "chi_sim.traineddata").exists()), None)
        if path is None:
            raise ImportError("no chi_sim traineddata (apt install tesseract-ocr-chi-sim)")
        self.tesserocr = tesserocr
        self.api = tesserocr.PyTessBaseAPI(path=path, lang="chi_sim+eng")

    def _read(self, rgb: np.ndarray, psm) -> str:
        from PIL import Image

        self.api.SetPageSegMode(psm)
        self.api.SetImage(Image.fromarray(rgb))
        return " ".join(self.api.GetUTF8Text().split())

    def line(self, rgb: np.ndarray) -> str:
        return self._read(rgb, self.tesserocr.PSM.SINGLE_LINE)

    def page(self, rgb: np.ndarray) -> str:
        return self._read(rgb, self.tesserocr.PSM.AUTO)


ENGINES = {"ours": Ours, "rapidocr3": Rapid3, "rapidocr": Rapid, "tesseract": Tesseract}


def subsets(item: Item) -> list[str]:
    rot = f" rot{item.rotate}" if item.rotate else ""
    if item.set == "render":
        names = [f"render {item.kind}{rot}"]
        if item.kind == "lines":
            names.append(f"render lines {'camera' if 'camera' in item.tags else 'clean'}")
        return names
    if item.kind == "lines":
        return [f"real lines {item.tags[0]}"]
    return [("real pages two-column" if "two-column" in item.tags else f"real pages {item.tags[0]}") + rot]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engines", default="ours,rapidocr,tesseract")
    p.add_argument("--sets", default="render,real")
    p.add_argument("--kinds", default="lines,pages")
    p.add_argument("--limit", type=int, default=0, help="at most N items per set and kind")
    p.add_argument("--rotate", default="0", help="pages: also read each turned clockwise by these angles")
    p.add_argument("--weights", type=Path, help="our recognizer's weights (default: the shipped file)")
    p.add_argument("--precision", default="auto", help="our first reading's precision (auto, int8, fp32)")
    p.add_argument("--block", type=int, default=20,
                   help="items each engine reads in a row before the next engine takes over (1: alternate per item)")
    args = p.parse_args(argv)
    # Tesseract's OpenMP spins like torch's: cap it at the same thread count (docs/facts.md §6).
    os.environ.setdefault("OMP_THREAD_LIMIT", str(args.threads))

    engines = []
    for name in args.engines.split(","):
        try:
            engines.append(Ours(args.threads, args.weights, args.precision) if name == "ours"
                           else ENGINES[name](args.threads))
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
    items = [it for it in load_items(args.eval_dir, args.sets.split(",")) if it.kind in args.kinds.split(",")]
    if args.limit:
        items = limit_items(items, args.limit)
    items = rotated(items, [int(r) for r in args.rotate.split(",")])

    warm = np.full((32, 160, 3), 255, np.uint8)
    warm[10:22, 8:150] = 0
    for e in engines:  # first calls pay one-off allocations
        e.line(warm)
        e.page(np.pad(warm, ((40, 40), (40, 40), (0, 0)), constant_values=255))

    errs: dict = defaultdict(lambda: [0, 0])
    times: dict = defaultdict(list)
    for b, start in enumerate(range(0, len(items), args.block)):
        block = items[start:start + args.block]
        rgbs = [transformed(np.asarray(load_image(it.file.read_bytes())), it.rotate) for it in block]
        for e in engines[b % len(engines):] + engines[: b % len(engines)]:
            for item, rgb in zip(block, rgbs):
                t0 = time.perf_counter()
                hyp = e.line(rgb) if item.kind == "lines" else e.page(rgb)
                ms = (time.perf_counter() - t0) * 1e3
                d, length = char_errors(item.ref, hyp)
                for s in subsets(item):
                    errs[(s, e.name)][0] += d
                    errs[(s, e.name)][1] += length
                    times[(s, e.name)].append(ms)
        print(f"  {start + len(block)}/{len(items)}", file=sys.stderr, flush=True)

    names = [e.name for e in engines]
    subset_names = sorted({s for s, _ in errs}, key=lambda s: (s.split()[0] != "render", s))
    print(f"{len(items)} items, {args.threads} thread(s) per engine; CER % / median ms")
    header = f"{'subset':<24} {'n':>4} " + " ".join(f"{n:>18}" for n in names)
    if "ours" in names:
        header += " " + " ".join(f"{'vs ' + n + ' CER,time':>20}" for n in names if n != "ours")
    print(header)
    for s in subset_names:
        row = f"{s:<24} {len(times[(s, names[0])]):>4} "
        cells = {}
        for n in names:
            e, c = errs[(s, n)]
            cer, med = e / max(1, c), statistics.median(times[(s, n)])
            cells[n] = (cer, med)
            row += f"{cer * 100:>9.2f} {med:>8.1f}"
        if "ours" in names:
            for n in names:
                if n == "ours":
                    continue
                cer_r = cells["ours"][0] / cells[n][0] if cells[n][0] else float("inf")
                row += f" {cer_r:>9.2f}x {cells['ours'][1] / cells[n][1]:>8.2f}x"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
