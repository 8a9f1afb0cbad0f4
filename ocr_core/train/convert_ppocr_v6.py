"""PP-OCRv6 small's recognizer (ONNX, from the `rapidocr==3.10.0` wheel) → our CRNN's CNN and classifier.

Origin: PyPI package `rapidocr==3.10.0`, file `rapidocr/models/PP-OCRv6_rec_small.onnx`, Apache-2.0
(`MODEL_LICENSES.md` in the wheel; the model is PaddleOCR's). The file is read at training time and
never committed.

What is taken: the convolutional backbone (everything up to the last average pool, whose output is
N x 384 x 1 x W/8) and the final classifier (120 → 18,710 classes: blank, the 18,708 characters of
the ONNX metadata key `character`, the space). The attention neck between them is not converted:
the CRNN's BiLSTM replaces it and learns from it by distillation (`ocr_core.train.distill`), which
reads the neck's output through `TeacherSession`.

Weights are matched by position (convolutions appear in forward order in the graph and in our
modules; each exported convolution's folded BatchNorm is the bias added right after it) and checked
by shape; `--check` compares our backbone with onnxruntime on the same input.

    python -m ocr_core.train.convert_ppocr_v6 --onnx PATH --out init.pt [--hidden 128] [--check]
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from ocr_core.model import CRNN, CRNNConfig, save_crnn

logger = logging.getLogger(__name__)

# Tensor names inside the exported graph.
BACKBONE_OUT = "p2o.pd_op.pool2d.1.0"      # N x 384 x 1 x T: the CNN's output
PRE_HEAD = "p2o.pd_op.transpose.8.0"       # N x T x 120: the neck's output, the classifier's input
HEAD_W, HEAD_B = "linear_8.w_0", "linear_8.b_0"


def v6_classes(onnx_path: Path) -> list[str]:
    """The model's classes: blank, the metadata dictionary, then the space (RapidOCR appends it:
    without it spaces vanish)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    chars = next(p.value for p in model.metadata_props if p.key == "character").split("\n")
    chars = [c for c in chars if c != ""]
    assert " " not in chars and len(set(chars)) == len(chars), "unexpected dictionary"
    return ["<blank>", *chars, " "]


def onnx_tensors(path: Path) -> tuple[dict[str, np.ndarray], list]:
    """An ONNX file's weights by name (initializers, and Constant nodes: some Paddle exports keep
    weights there) and its nodes in graph order."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            tensors[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return tensors, list(graph.node)


def convert(onnx_path: Path, hidden: int = 128, seed: int = 0) -> tuple[CRNN, list[str]]:
    """Our CRNN with PP-OCRv6's CNN and classifier loaded; the BiLSTM and the projection are new
    (seeded random), to be trained by distillation."""
    tensors, nodes = onnx_tensors(onnx_path)
    classes = v6_classes(onnx_path)
    # Bias of each convolution: the initializer added to its output by the next Add node.
    bias_of = {}
    for n in nodes:
        if n.op_type == "Add" and len(n.input) == 2 and n.input[1] in tensors:
            bias_of[n.input[0]] = n.input[1]
    convs = [(n.input[1], bias_of.get(n.output[0])) for n in nodes if n.op_type == "Conv"]
    torch.manual_seed(seed)
    model = CRNN(CRNNConfig(num_classes=len(classes), hidden=hidden))
    ours = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) >= len(ours), (len(convs), len(ours))
    with torch.no_grad():
        for mod, (wname, bname) in zip(ours, convs):
            w = torch.from_numpy(tensors[wname].copy())
            assert tuple(mod.weight.shape) == tuple(w.shape), (wname, tuple(mod.weight.shape), tuple(w.shape))
            assert bname is not None, f"no bias after {wname}"
            mod.weight.copy_(w)
            mod.bias.copy_(torch.from_numpy(tensors[bname].reshape(-1).copy()))  # type: ignore[union-attr]  # has one
        w = torch.from_numpy(tensors[HEAD_W].T.copy())               # C x 120
        assert tuple(w.shape) == tuple(model.head.weight.shape), w.shape
        model.head.weight.copy_(w)
        model.head.bias.copy_(torch.from_numpy(tensors[HEAD_B].copy()))
    logger.info("converted PP-OCRv6 small: %d backbone convolutions, %d classes", len(ours), len(classes))
    model.eval()
    return model, classes


class TeacherSession:
    """PP-OCRv6 as shipped, in onnxruntime, answering the CNN features and the neck's output (the
    classifier's input) as well as its probabilities."""

    def __init__(self, onnx_path: Path, threads: int = 1) -> None:
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(onnx_path))
        for name in (BACKBONE_OUT, PRE_HEAD):
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """N x 3 x 48 x W → (probabilities N x T x C, features N x 384 x 1 x T, pre-head N x T x 120)."""
        probs, feats, pre = self.sess.run(None, {self.input: x.astype(np.float32)})
        return probs, feats, pre


def check_against_onnx(model: CRNN, onnx_path: Path, x: np.ndarray | None = None) -> dict[str, float]:
    """Max abs differences between our backbone / classifier and onnxruntime on the same input."""
    if x is None:
        x = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 48, 320)).astype(np.float32)
    probs, feats, pre = TeacherSession(onnx_path, threads=2)(x)
    with torch.no_grad():
        ours = model.backbone(torch.from_numpy(x)).numpy()
        head = torch.softmax(model.head(torch.from_numpy(pre)), dim=-1).numpy()
    return {"backbone": float(np.abs(ours - feats).max()), "backbone_scale": float(np.abs(feats).max()),
            "classifier": float(np.abs(head - probs).max())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--check", action="store_true", help="compare with onnxruntime")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    model, classes = convert(args.onnx, hidden=args.hidden)
    if args.check:
        logger.info("max |ours - onnxruntime|: %s", check_against_onnx(model, args.onnx))
    save_crnn(model, str(args.out), {"name": "crnn-ppocrv6cnn-bilstm", "version": "v6-init",
                                     "charset": "".join(classes[1:])}, half=False)


if __name__ == "__main__":
    main()
