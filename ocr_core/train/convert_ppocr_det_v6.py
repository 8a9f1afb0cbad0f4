"""PP-OCRv6's DB text detector (ONNX, from the `rapidocr==3.10.0` wheel) → our `GraphDetector`.

Origin: PyPI package `rapidocr==3.10.0`, file `rapidocr/models/PP-OCRv6_det_small.onnx`,
Apache-2.0 (PaddleOCR models, `MODEL_LICENSES.md` in the wheel). The file is read at build time and
never committed; `--fetch` downloads the wheel with pip (no dependencies) into a cache folder.

The graph uses 15 plain operations (convolutions, GELU written as Erf arithmetic, squeeze-excite,
max pooling, nearest upsampling, concatenation, transposed convolutions, a sigmoid). Each node
becomes one step of `ocr_core.detector_graph.GraphDetector` with its attributes; initializers
become its weights; the constant scales of Resize nodes become attributes. `--check` compares the
probability map with onnxruntime on a drawn text line.

    python -m ocr_core.train.convert_ppocr_det_v6 --fetch --out var/train/dbnet_v6.pt --check
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from ocr_core.detect import detector_input_pm1
from ocr_core.detector_graph import GraphDetector, load_any, save_graph_detector

logger = logging.getLogger(__name__)

WHEEL = "rapidocr==3.10.0"
MEMBER = "rapidocr/models/PP-OCRv6_det_small.onnx"
CACHE = Path(__file__).resolve().parents[2] / "var" / "train" / "rapidocr310"


def fetch(cache: Path = CACHE) -> Path:
    """The ONNX file, downloaded (wheel only, no dependencies) and unpacked on first use."""
    target = cache / MEMBER
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), WHEEL],
                   check=True)
    wheel = next(cache.glob("rapidocr-3.10.0-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extract(MEMBER, cache)
    return target


def convert(onnx_path: Path) -> GraphDetector:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    steps = []
    for n in g.node:
        if n.op_type == "Constant":
            continue
        attrs = {}
        for a in n.attribute:
            v = helper.get_attribute_value(a)
            attrs[a.name] = v.decode() if isinstance(v, bytes) else (list(v) if isinstance(v, (list, tuple)) else v)
        inputs = list(n.input)
        if n.op_type == "Resize":
            if attrs.get("mode") != "nearest":
                raise ValueError(f"Resize mode {attrs.get('mode')} is not supported")
            scales = consts[inputs[2]] if len(inputs) > 2 and inputs[2] in consts else None
            if scales is None or len(scales) != 4 or any(s != int(s) for s in scales[2:]):
                raise ValueError("Resize needs constant integer scales")
            attrs = {"scale": [float(scales[2]), float(scales[3])]}
            inputs = inputs[:1]
        steps.append({"op": n.op_type, "inputs": inputs, "output": n.output[0], "attrs": attrs})
    used = {i for s in steps for i in s["inputs"]}
    weights = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in consts.items()
               if k in used and np.issubdtype(np.asarray(v).dtype, np.floating)}
    out = GraphDetector(steps, weights, g.output[0].name)
    out.eval()
    logger.info("converted PP-OCRv6 det: %d steps, %d weight tensors, %.2f M parameters", len(steps),
                len(weights), sum(v.numel() for v in weights.values()) / 1e6)
    return out


def check_against_onnx(model: torch.nn.Module, onnx_path: Path) -> tuple[float, float]:
    """(largest probability difference, share of pixels decided differently at 0.3) vs
    onnxruntime, on a drawn text line."""
    import cv2
    import onnxruntime as ort

    img = np.full((96, 320, 3), 255, np.uint8)
    cv2.putText(img, "Total 1,234.56", (12, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    x = detector_input_pm1(img)   # how RapidOCR 3.10's det config feeds it: BGR, mean = std = 0.5
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    assert ref.max() > 0.9, "the reference found no text: the check would prove nothing"
    return float(np.abs(ref - ours).max()), float(((ref > 0.3) != (ours > 0.3)).mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=Path, help="the ONNX file (default: fetched, see --fetch)")
    p.add_argument("--fetch", action="store_true", help=f"download {WHEEL} (no deps) when --onnx is not given")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--check", action="store_true", help="compare with onnxruntime")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    onnx_path = args.onnx or (fetch() if args.fetch else None)
    if onnx_path is None:
        raise SystemExit("give --onnx PATH or --fetch")
    model = convert(onnx_path)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_graph_detector(model, str(args.out), {"name": "dbnet-ppocrv6-small", "version": "ppocrv6-det",
                                               "input": "bgr-pm1",
                                               "origin": f"{WHEEL} {MEMBER} (Apache-2.0)"})
    logger.info("wrote %s (%.1f MB)", args.out, args.out.stat().st_size / 1e6)
    if args.check:   # what would ship (fp16 weights) is what is compared
        diff, decided = check_against_onnx(load_any(args.out.read_bytes())[0], onnx_path)
        logger.info("max probability difference %.2e; pixels decided differently %.2e", diff, decided)
        if decided > 1e-3:
            raise SystemExit(f"conversion does not match onnxruntime ({decided:.2e} of pixels differ)")


if __name__ == "__main__":
    main()
