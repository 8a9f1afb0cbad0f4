"""Post-training int8 of the recognizer's CNN: how much faster the first reading's graph runs and how
many more errors it makes on held-out synthetic lines (never the dev sets). Measured, not shipped
(docs/benchmarks.md, "Session 17").

    .venv/bin/python bench/int8_cnn.py ../shared/eval --fonts F --ingredients I \\
        [--variants all,pw,pwstem] [--method minmax] [--seed 5151 --lines 400]

The fp32 graph is `ocr_core.runtime.recognizer_graph` of the shipped weights; each variant quantizes
a set of its convolutions with onnxruntime's `quantize_static` (QDQ: per-channel int8 weights,
per-tensor uint8 activations), calibrated on 100 synthetic lines of seed 999 (`--method`:
onnxruntime's MinMax, Percentile or Entropy; the last two need one input shape, so their
calibration lines are padded to the widest). Variants: "all" (every convolution), "pw" (the 1x1
convolutions of the mixer blocks and downsamples, not the squeeze-excite ones), "pwstem" (pw and
the stem's convolutions after its first). The BiLSTM, the classifier and the read from the map
stay fp32.

Speed: the 607 dev lines through each graph alone (no text read), blocks of 20 rotating through
the variants, two passes; the median of the per-block time ratios to fp32. Accuracy: `--lines`
held-out lines of `--seed` read end to end (`Predictor.read(crop, single_line=True)`) with the
variant's graph in place of the fp32 one; errors by the dev sets' rule. On a CPU without VNNI the
int8 convolutions gain little (docs/benchmarks.md, "Session 13").
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_core import Predictor  # noqa: E402
from ocr_core.evaluate import char_errors, load_items  # noqa: E402
from ocr_core.images import load_image  # noqa: E402
from ocr_core.preprocess import batch_lines, prepare_line  # noqa: E402
from ocr_core.runtime import OnnxRunner, onnx_session, recognizer_graph  # noqa: E402
from ocr_core.train.distill import synthetic_lines  # noqa: E402

PW = ("/expand/conv/Conv", "/reduce/conv/Conv", "/pw1/conv/Conv", "/pw2/conv/Conv")
STEM = ("/conv2a/conv/Conv", "/conv2b/conv/Conv", "/conv3/conv/Conv", "/conv4/conv/Conv")
BLOCK = 20


def conv_sets(graph_path: Path) -> dict[str, list[str]]:
    import onnx

    convs = [n.name for n in onnx.load(str(graph_path)).graph.node if n.op_type == "Conv"]
    pw = [c for c in convs if c.endswith(PW) and "/se/" not in c]
    return {"all": convs, "pw": pw, "pwstem": pw + [c for c in convs if c.endswith(STEM)]}


def with_first_session(base: OnnxRunner, session: Any) -> OnnxRunner:
    """The predictor's runner with the first reading's session swapped (its read from the map kept)."""
    runner = copy.copy(base)
    runner.session = session
    return runner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path, help="dev sets: only their line crops' shapes and pixels are timed")
    p.add_argument("--fonts", type=Path, required=True)
    p.add_argument("--ingredients", type=Path, required=True)
    p.add_argument("--variants", default="all,pw,pwstem")
    p.add_argument("--method", default="minmax", choices=("minmax", "percentile", "entropy"))
    p.add_argument("--seed", type=int, default=5151)
    p.add_argument("--lines", type=int, default=400)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    predictor = Predictor.load(threads=args.threads, detector=False, precision="fp32")  # crnn.pt
    base = predictor.runner
    if not isinstance(base, OnnxRunner):
        raise SystemExit("needs the onnxruntime engine")
    calib = [batch_lines([prepare_line(crop)])[0] for crop, _ in
             synthetic_lines(args.fonts, args.ingredients, 999, 100)]
    if args.method != "minmax":
        widest = max(x.shape[3] for x in calib)
        calib = [np.pad(x, ((0, 0), (0, 0), (0, 0), (0, widest - x.shape[3]))) for x in calib]
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[args.method]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": x} for x in calib])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    graphs: dict[str, bytes] = {"fp32": recognizer_graph(predictor.model)}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx")
        fp32.write_bytes(graphs["fp32"])
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        sets = conv_sets(pre)
        for name in args.variants.split(","):
            out = Path(tmp, f"{name}.onnx")
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"], nodes_to_quantize=sets[name], calibrate_method=method)
            graphs[name] = out.read_bytes()

    sessions = {name: onnx_session(g, args.threads) for name, g in graphs.items()}
    items = [it for it in load_items(args.eval_dir, ["render", "real"]) if it.kind == "lines"]
    xs = [batch_lines([prepare_line(np.asarray(load_image(it.file.read_bytes())))])[0] for it in items]
    ratios: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for rep in range(2):
        for b, start in enumerate(range(0, len(xs), BLOCK)):
            turn = (b + rep) % len(names)
            spent = {}
            for name in names[turn:] + names[:turn]:
                s = sessions[name]
                s.run(None, {"x": xs[start]})        # the previous session's threads may still spin
                t0 = time.perf_counter()
                for x in xs[start:start + BLOCK]:
                    s.run(None, {"x": x})
                spent[name] = time.perf_counter() - t0
            for name in names:
                ratios[name].append(spent[name] / spent["fp32"])

    lines = synthetic_lines(args.fonts, args.ingredients, args.seed, args.lines)
    print(f"calibration {args.method}; held-out seed {args.seed}, {len(lines)} lines; graph time on "
          f"{len(xs)} dev lines, median of per-block ratios to fp32")
    print(f"{'variant':8s} {'time':>7s} {'errors':>7s} {'chars':>7s}")
    for name in graphs:
        predictor.runner = with_first_session(base, sessions[name])
        errors = chars = 0
        for crop, text in lines:
            e, n = char_errors(text, predictor.read(crop, single_line=True).text)
            errors, chars = errors + e, chars + n
        predictor.runner = base
        print(f"{name:8s} {statistics.median(ratios[name]):6.3f}x {errors:7d} {chars:7d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
