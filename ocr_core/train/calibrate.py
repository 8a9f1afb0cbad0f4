"""Post-training int8 ranges for a recognizer's first reading: the global min and max of each of its
CNN's 26 1x1 ("pw") convolutions' inputs and outputs over synthetic lines read one at a time in
fp32 (onnxruntime's MinMax calibration), written into a copy of the weights file
(`meta["int8"]["ranges"]`), from which `ocr_core.quantized.int8_graph` builds the int8 graph at
load time. The weights themselves are copied unchanged (fp16 → fp32 → fp16 is exact), so the file
reads in fp32 exactly as the one it came from.

Quantization-aware fine-tuning (`ocr_core.train.qat`) learns its ranges instead; this needs no
training (~30 s) and leaves the fp32 model as it was.

    python -m ocr_core.train.calibrate --weights crnn.pt --fonts F --ingredients I --out crnn-int8.pt
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ocr_core.model import CRNN, load_crnn, save_crnn
from ocr_core.preprocess import batch_lines, prepare_line
from ocr_core.quantized import pw_conv_tensors
from ocr_core.runtime import onnx_session, recognizer_graph
from ocr_core.train.distill import synthetic_lines

logger = logging.getLogger(__name__)

# What calibrated the shipped ranges: lines of a seed no training run or held-out check used.
CALIBRATION_SEED = 999
CALIBRATION_LINES = 100


def pw_ranges(model: CRNN, crops: Iterable[np.ndarray], *, threads: int = 1) -> dict[str, list[float]]:
    """Each pw convolution's input and output range ("layers.<i>/<conv>/in|out" → [min, max]) over
    the crops, each read alone as a single line is (prepared, padded as `batch_lines` pads one)."""
    import onnx

    model_proto = onnx.load_from_string(recognizer_graph(model))
    convs = pw_conv_tensors(model_proto)
    # Every pw input and output becomes an extra graph output (names are unique; a tensor both a
    # conv's output and the next's input is asked for once).
    names = sorted({t for _, t_in, t_out in convs.values() for t in (t_in, t_out)})
    have = {o.name for o in model_proto.graph.output}
    for name in names:
        if name not in have:
            model_proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = onnx_session(model_proto.SerializeToString(), threads)
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    count = 0
    for crop in crops:
        x, _ = batch_lines([prepare_line(crop)])                  # 1 x 3 x 48 x W
        values = session.run(names, {"x": x})
        for name, v in zip(names, values):
            lo[name] = min(lo[name], float(v.min()))
            hi[name] = max(hi[name], float(v.max()))
        count += 1
    if not count:
        raise ValueError("no calibration lines")
    out: dict[str, list[float]] = {}
    for key, (_node, t_in, t_out) in convs.items():
        out[f"{key}/in"] = [lo[t_in], hi[t_in]]
        out[f"{key}/out"] = [lo[t_out], hi[t_out]]
    logger.info("calibrated %d ranges on %d lines", len(out), count)
    return out


def write_calibrated(model: CRNN, meta: dict, out: Path, ranges: dict[str, list[float]], *, how: str) -> None:
    """The weights `load_crnn` gave (`model`, `meta`) written to `out` with `ranges` in the meta; the
    parameters as they were."""
    out_meta = {k: v for k, v in meta.items() if k != "config"}
    out_meta["int8"] = {"convs": "pw", "ranges": ranges, "calibration": how}
    save_crnn(model, str(out), out_meta)
    logger.info("wrote %s", out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--fonts", type=Path, required=True)
    p.add_argument("--ingredients", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    p.add_argument("--lines", type=int, default=CALIBRATION_LINES)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model, meta = load_crnn(str(args.weights))
    crops = [crop for crop, _ in synthetic_lines(args.fonts, args.ingredients, args.seed, args.lines)]
    ranges = pw_ranges(model, crops, threads=args.threads)
    write_calibrated(model, meta, args.out, ranges, how=f"minmax, {args.lines} synthetic lines of seed {args.seed}")


if __name__ == "__main__":
    main()
