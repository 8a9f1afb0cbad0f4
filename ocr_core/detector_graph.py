"""A text detector held as a small graph of torch operations (PP-OCRv6's DB detector).

PP-OCRv6's detector (a PP-HGNet-style backbone with GELU and squeeze-excite blocks, an RSE-FPN
neck and a DB head) is described by its converter (`ocr_core.train.convert_ppocr_det_v6`) as a
list of steps over named tensors (convolutions, element-wise arithmetic, pooling, nearest
upsampling, concatenation) plus the weights they use. This module runs such a list with torch
operations; its weights file (written with `model.write_weights`) carries the steps in its meta,
so loading needs no third-party file and no ONNX runtime.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.model import read_weights, write_weights

# The operations a step may name, with the attributes each takes (checked when loading).
OPS = {"Conv", "ConvTranspose", "Add", "Mul", "Div", "Erf", "Relu", "Sigmoid", "HardSigmoid", "MaxPool",
       "Concat", "ReduceMean", "GlobalAveragePool", "Resize", "Identity"}


class GraphDetector(nn.Module):
    """Steps `[{"op", "inputs", "output", "attrs"}]` over tensors named by string; `weights` maps
    the names of constant tensors to their values. Input "x": N x 3 x H x W, BGR in [-1, 1]
    (H and W multiples of 32); output: N x 1 x H x W text probability."""

    def __init__(self, steps: list[dict], weights: dict[str, torch.Tensor], output: str) -> None:
        super().__init__()
        unknown = {s["op"] for s in steps} - OPS
        if unknown:
            raise ValueError(f"unsupported detector steps: {sorted(unknown)}")
        self.steps = steps
        self.output = output
        # Weight names from ONNX hold dots; a ParameterDict key may not.
        self.names = {name: f"w{i}" for i, name in enumerate(sorted(weights))}
        self.weights = nn.ParameterDict({self.names[k]: nn.Parameter(v, requires_grad=False)
                                         for k, v in weights.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {"x": x}

        def get(name: str) -> torch.Tensor:
            return env[name] if name in env else self.weights[self.names[name]]

        for s in self.steps:
            a = s["attrs"]
            ins = [get(n) for n in s["inputs"] if n]
            op = s["op"]
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                y = ins[0]
                if a.get("auto_pad") == "SAME_UPPER":
                    y = _pad_same_upper(y, a["kernel_shape"], a.get("strides", [1, 1]), 0.0)
                elif pads[0] != pads[2] or pads[1] != pads[3]:
                    y = F.pad(y, (pads[1], pads[3], pads[0], pads[2]))
                    pads = [0, 0, 0, 0]
                y = F.conv2d(y, ins[1], ins[2] if len(ins) > 2 else None, stride=a.get("strides", [1, 1]),
                             padding=(pads[0], pads[1]), dilation=a.get("dilations", [1, 1]),
                             groups=a.get("group", 1))
            elif op == "ConvTranspose":
                y = F.conv_transpose2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                                       stride=a.get("strides", [1, 1]), groups=a.get("group", 1))
            elif op == "Add":
                y = ins[0] + ins[1]
            elif op == "Mul":
                y = ins[0] * ins[1]
            elif op == "Div":
                y = ins[0] / ins[1]
            elif op == "Erf":
                y = torch.erf(ins[0])
            elif op == "Relu":
                y = F.relu(ins[0])
            elif op == "Sigmoid":
                y = torch.sigmoid(ins[0])
            elif op == "HardSigmoid":
                y = torch.clamp(ins[0] * a["alpha"] + a["beta"], 0.0, 1.0)
            elif op == "MaxPool":
                kh, kw = a["kernel_shape"]
                sh, sw = a.get("strides", [1, 1])
                y = ins[0]
                if a.get("auto_pad") == "SAME_UPPER":
                    y = _pad_same_upper(y, (kh, kw), (sh, sw), float("-inf"))
                y = F.max_pool2d(y, (kh, kw), (sh, sw))
            elif op == "Concat":
                y = torch.cat(ins, dim=a["axis"])
            elif op == "ReduceMean":
                y = ins[0].mean(dim=tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1)))
            elif op == "GlobalAveragePool":
                y = ins[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Resize":
                # nearest, asymmetric, floor: an integer scale repeats each pixel
                y = F.interpolate(ins[0], scale_factor=tuple(a["scale"]), mode="nearest")
            else:  # Identity
                y = ins[0]
            env[s["output"]] = y
        return env[self.output]


def _pad_same_upper(x: torch.Tensor, kernel, strides, value: float) -> torch.Tensor:
    """ONNX auto_pad SAME_UPPER: output size ceil(input / stride), the odd pixel of padding at the end."""
    (kh, kw), (sh, sw) = kernel, strides
    h, w = x.shape[-2:]
    ph = max(0, (math.ceil(h / sh) - 1) * sh + kh - h)
    pw = max(0, (math.ceil(w / sw) - 1) * sw + kw - w)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


def save_graph_detector(model: GraphDetector, path: str, meta: dict, *, half: bool = True) -> None:
    write_weights(model, path, {**meta, "arch": "graph", "steps": model.steps, "output": model.output,
                                "names": model.names}, half=half)


def load_graph_detector(state: dict, meta: dict) -> GraphDetector:
    names = meta["names"]
    inverse = {v: k for k, v in names.items()}
    weights = {inverse[k.split(".", 1)[1]]: v for k, v in state.items()}
    model = GraphDetector(meta["steps"], weights, meta["output"])
    model.eval()
    return model


def load_any(source: str | bytes) -> tuple[nn.Module, dict]:
    """A detector weights file of either kind: the hand-built PP-OCRv3 DBNet or a step graph."""
    from ocr_core.detector_model import DBNet

    state, meta = read_weights(source)
    if meta.get("arch") == "graph":
        return load_graph_detector(state, meta), meta
    model = DBNet()
    model.load_state_dict(state)
    model.eval()
    return model, meta
