"""Our recognizer's graph against RapidOCR 3.10.0's (PP-OCRv6 small) alone, no Python around them.

    .venv/bin/python bench/rec_graphs.py ../shared/eval [--threads 2] [--passes 2] [--widths 200,400,800]

What `bench/ocr_bench.py` times is a whole line read: the model plus each engine's Python around
it (preprocessing, decoding, our word boxes and second looks). This times only the onnxruntime
call of each engine's recognizer on the same dev line crops, each prepared by its own engine's
code (ours: `batch_lines(prepare_line(...))`, padded to the line plus a margin; RapidOCR's:
its `resize_norm_img`, padded to at least 320 columns), so the two graphs are compared as they
run in the products. Our graph is the first reading's (`ocr_core.runtime.recognizer_graph`: CNN,
BiLSTM, classifier and the greedy path); theirs is the ONNX file the wheel ships (CNN, attention
neck, classifier). Lines go in blocks of 20, the engines alternating per block and the order
rotating, for the same reason as in ocr_bench.py: onnxruntime's worker threads spin on after a
call, and two sessions alternated call by call slow each other down by half.

`--widths` also times random inputs of those widths (both graphs on the same tensor), eight runs
per block, 30 blocks per width, and prints the median of the per-block ratios.
Prints per subset the median ms of each graph and ours / theirs (< 1: ours is faster).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

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


def rapid_recognizer(threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], None]]:
    """RapidOCR 3.10.0's own preprocessing of one BGR line (→ 1 x 3 x 48 x W) and its onnxruntime
    session's run, taken from the engine the wheel builds."""
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "error",
                              "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                              "EngineConfig.onnxruntime.inter_op_num_threads": 1})
    engine(np.full((48, 200, 3), 255, np.uint8), use_det=False, use_cls=False, use_rec=True)  # builds it lazily
    rec = engine.text_rec
    assert rec is not None, "RapidOCR builds its recognizer on the first call"
    session = rec.session.session                       # the onnxruntime.InferenceSession
    name = session.get_inputs()[0].name
    _, img_h, img_w = rec.rec_image_shape[:3]

    def prepare(bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        ratio = max(img_w / img_h, w / h)               # as its __call__ does for a batch of one
        return rec.resize_norm_img(bgr, ratio)[None].astype(np.float32)

    def run(x: np.ndarray) -> None:
        session.run(None, {name: x})

    return prepare, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--widths", default="", help="also time random inputs of these widths")
    args = p.parse_args(argv)

    runner = Predictor.load(threads=args.threads, detector=False).runner
    if not isinstance(runner, OnnxRunner):
        raise SystemExit("needs the onnxruntime engine")
    session = runner.session

    def ours_run(x: np.ndarray) -> None:
        session.run(None, {"x": x})

    their_prepare, their_run = rapid_recognizer(args.threads)
    items = [it for it in load_items(args.eval_dir, ["render", "real"]) if it.kind == "lines"]
    inputs = []
    for it in items:
        rgb = np.asarray(load_image(it.file.read_bytes()))
        inputs.append((batch_lines([prepare_line(rgb)])[0], their_prepare(np.ascontiguousarray(rgb[:, :, ::-1]))))
    engines = {"ours": (ours_run, 0), "rapidocr3": (their_run, 1)}
    times: dict = defaultdict(list)
    for rep in range(args.passes):
        for b, start in enumerate(range(0, len(items), BLOCK)):
            names = list(engines)
            if (b + rep) % 2:
                names.reverse()
            for name in names:
                run, k = engines[name]
                run(inputs[start][k])           # the other engine's threads may still be spinning
                for i in range(start, min(start + BLOCK, len(items))):
                    t0 = time.perf_counter()
                    run(inputs[i][k])
                    ms = (time.perf_counter() - t0) * 1e3
                    for s in subsets(items[i]):
                        times[(s, name)].append(ms)
    print(f"{len(items)} lines x {args.passes} passes, {args.threads} thread(s); median ms of the graph alone")
    print(f"{'subset':24s} {'ours':>8s} {'rapidocr3':>10s} {'ours/theirs':>12s}")
    for s in sorted({s for s, _ in times}):
        o, r = statistics.median(times[(s, "ours")]), statistics.median(times[(s, "rapidocr3")])
        print(f"{s:24s} {o:8.2f} {r:10.2f} {o / r:11.3f}x")

    rng = np.random.default_rng(0)
    for w in [int(v) for v in args.widths.split(",") if v]:
        x = rng.uniform(-1, 1, (1, 3, 48, w)).astype(np.float32)
        ratios, per = [], defaultdict(list)
        for b in range(30):
            got = {}
            for name in (("ours", "rapidocr3") if b % 2 else ("rapidocr3", "ours")):
                run = engines[name][0]
                run(x)
                t0 = time.perf_counter()
                for _ in range(8):
                    run(x)
                got[name] = (time.perf_counter() - t0) / 8 * 1e3
                per[name].append(got[name])
            ratios.append(got["ours"] / got["rapidocr3"])
        o, r = statistics.median(per["ours"]), statistics.median(per["rapidocr3"])
        ratio = statistics.median(ratios)
        print(f"random {w:4d} columns     {o:8.2f} {r:10.2f} {ratio:11.3f}x (median of per-block ratios)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
