"""Our recognizer's graph against RapidOCR 3.10.0's (PP-OCRv6 small) alone, and what a line read
adds to it.

    .venv/bin/python bench/rec_graphs.py ../shared/eval [--threads 2] [--passes 2] [--widths 200,400,800]

What `bench/ocr_bench.py` times is a whole line read: the model plus each engine's Python around
it (preprocessing, decoding, our word boxes and second looks). This splits it. Four ways of
reading each dev line crop, blocks of 20 lines rotating through them:

- "graph": only the onnxruntime call of each engine's recognizer, on the line prepared by its own
  engine's code (ours: `batch_lines(prepare_line(...))`, padded to the line plus a margin;
  RapidOCR's: its `resize_norm_img`, padded to at least 320 columns). Our graph is the first
  reading's (`ocr_core.runtime.recognizer_graph`: CNN, BiLSTM, classifier, greedy path); theirs is
  the ONNX file the wheel ships (CNN, attention neck, classifier).
- "line": the whole single-line read, as ocr_bench.py times it (`Predictor.read(rgb,
  single_line=True)`; RapidOCR without its detector), with the time its onnxruntime calls took
  inside it ("model in line": ours includes second readings, from the map or stretched).

The blocks rotate for the same reason as in ocr_bench.py: onnxruntime's worker threads spin on
after a call, and sessions alternated call by call slow each other down by half.
`--widths` also times random inputs of those widths (both graphs on the same tensor), eight runs
per block, 30 blocks per width, and prints the median of the per-block ratios.
Prints per subset the median ms of each and ours / theirs (< 1: ours is faster).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ocr_bench import subsets  # noqa: E402

from ocr_core import Predictor  # noqa: E402
from ocr_core.evaluate import load_items  # noqa: E402
from ocr_core.images import load_image  # noqa: E402
from ocr_core.preprocess import batch_lines, prepare_line  # noqa: E402
from ocr_core.runtime import OnnxRunner  # noqa: E402

BLOCK = 20


class TimedSession:
    """An onnxruntime session whose `run` calls add their time to `spent` (seconds)."""

    def __init__(self, session: Any) -> None:
        self.session, self.spent = session, 0.0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


class Engine:
    """One engine's graph alone (`prepare` then `graph`) and its whole line read (`line`), its
    onnxruntime sessions wrapped so that the time they take inside a line read is known."""

    prepare: Callable[[np.ndarray], np.ndarray]
    graph: Callable[[np.ndarray], object]
    line: Callable[[np.ndarray], object]
    sessions: list[TimedSession]

    def model_seconds(self) -> float:
        return sum(s.spent for s in self.sessions)


def ours(threads: int) -> Engine:
    predictor = Predictor.load(threads=threads, detector=False, precision="fp32")  # the fp32 graph (crnn.pt)
    runner = predictor.runner
    if not isinstance(runner, OnnxRunner):
        raise SystemExit("needs the onnxruntime engine")
    e = Engine()
    first, fine = TimedSession(runner.session), TimedSession(runner.fine_session)
    runner.session, runner.fine_session = first, fine   # what a line read calls
    e.sessions = [first, fine]
    e.prepare = lambda rgb: batch_lines([prepare_line(rgb)])[0]
    e.graph = lambda x: first.session.run(None, {"x": x})
    e.line = lambda rgb: predictor.read(rgb, single_line=True)
    return e


def rapidocr3(threads: int) -> Engine:
    """RapidOCR 3.10.0: its own preprocessing of one line (→ 1 x 3 x 48 x W), its recognizer's
    onnxruntime session, and its single-line call (as ocr_bench.py makes it)."""
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "error",
                              "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                              "EngineConfig.onnxruntime.inter_op_num_threads": 1})
    engine(np.full((48, 200, 3), 255, np.uint8), use_det=False, use_cls=False, use_rec=True)  # builds it lazily
    rec = engine.text_rec
    assert rec is not None, "RapidOCR builds its recognizer on the first call"
    timed = TimedSession(rec.session.session)           # the onnxruntime.InferenceSession it calls
    rec.session.session = timed
    name = timed.get_inputs()[0].name
    _, img_h, img_w = rec.rec_image_shape[:3]

    def prepare(rgb: np.ndarray) -> np.ndarray:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        h, w = bgr.shape[:2]
        ratio = max(img_w / img_h, w / h)               # as its __call__ does for a batch of one
        return rec.resize_norm_img(bgr, ratio)[None].astype(np.float32)

    e = Engine()
    e.sessions = [timed]
    e.prepare = prepare
    e.graph = lambda x: timed.session.run(None, {name: x})
    e.line = lambda rgb: engine(rgb[:, :, ::-1].copy(), use_det=False, use_cls=False, use_rec=True)
    return e


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--widths", default="", help="also time random inputs of these widths")
    args = p.parse_args(argv)

    engines = {"ours": ours(args.threads), "rapidocr3": rapidocr3(args.threads)}
    items = [it for it in load_items(args.eval_dir, ["render", "real"]) if it.kind == "lines"]
    rgbs = [np.asarray(load_image(it.file.read_bytes())) for it in items]
    prepared = {name: [e.prepare(rgb) for rgb in rgbs] for name, e in engines.items()}
    ways = [(name, kind) for name in engines for kind in ("graph", "line")]
    times: dict = defaultdict(list)
    for rep in range(args.passes):
        for b, start in enumerate(range(0, len(items), BLOCK)):
            turn = (b + rep) % len(ways)
            for name, kind in ways[turn:] + ways[:turn]:
                e = engines[name]
                for i in range(start, min(start + BLOCK, len(items))):
                    before = e.model_seconds()
                    t0 = time.perf_counter()
                    if kind == "graph":
                        e.graph(prepared[name][i])
                    else:
                        e.line(rgbs[i])
                    ms = (time.perf_counter() - t0) * 1e3
                    for s in subsets(items[i]):
                        times[(s, name, kind)].append(ms)
                        if kind == "line":
                            times[(s, name, "model in line")].append((e.model_seconds() - before) * 1e3)
    print(f"{len(items)} lines x {args.passes} passes, {args.threads} thread(s); median ms, ours / rapidocr3")
    print(f"{'subset':22s} {'graph':>22s} {'model in line':>22s} {'line':>22s}")
    for s in sorted({s for s, _, _ in times}):
        cells = []
        for kind in ("graph", "model in line", "line"):
            o, r = statistics.median(times[(s, "ours", kind)]), statistics.median(times[(s, "rapidocr3", kind)])
            cells.append(f"{o:6.2f} {r:6.2f} {o / r:6.3f}x")
        print(f"{s:22s} " + " ".join(f"{c:>22s}" for c in cells))

    rng = np.random.default_rng(0)
    for w in [int(v) for v in args.widths.split(",") if v]:
        x = rng.uniform(-1, 1, (1, 3, 48, w)).astype(np.float32)
        ratios, per = [], defaultdict(list)
        for b in range(30):
            got = {}
            for name in (("ours", "rapidocr3") if b % 2 else ("rapidocr3", "ours")):
                graph = engines[name].graph
                graph(x)                        # the other engine's threads may still be spinning
                t0 = time.perf_counter()
                for _ in range(8):
                    graph(x)
                got[name] = (time.perf_counter() - t0) / 8 * 1e3
                per[name].append(got[name])
            ratios.append(got["ours"] / got["rapidocr3"])
        o, r = statistics.median(per["ours"]), statistics.median(per["rapidocr3"])
        ratio = statistics.median(ratios)
        print(f"random {w:4d} columns   graph {o:6.2f} {r:6.2f} {ratio:6.3f}x (median of per-block ratios)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
