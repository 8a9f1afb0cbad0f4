"""The step-graph detector that holds PP-OCRv6's DB detector: each step does what ONNX defines,
and a saved graph loads back to the same function."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ocr_core.detector_graph import GraphDetector, load_any, save_graph_detector


def _graph() -> tuple[GraphDetector, dict]:
    g = torch.Generator().manual_seed(0)
    w = {"c1.w": torch.randn(4, 3, 3, 3, generator=g), "c1.b": torch.randn(4, generator=g),
         "c2.w": torch.randn(4, 4, 2, 2, generator=g), "up.w": torch.randn(8, 8, 2, 2, generator=g),
         "half": torch.tensor(2.0), "se.w": torch.randn(8, 8, 1, 1, generator=g)}
    steps = [
        {"op": "Conv", "inputs": ["x", "c1.w", "c1.b"], "output": "a",
         "attrs": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "group": 1}},
        {"op": "Relu", "inputs": ["a"], "output": "r", "attrs": {}},
        {"op": "Conv", "inputs": ["r", "c2.w"], "output": "s",
         "attrs": {"kernel_shape": [2, 2], "strides": [1, 1], "auto_pad": "SAME_UPPER", "group": 1}},
        {"op": "MaxPool", "inputs": ["r"], "output": "m",
         "attrs": {"kernel_shape": [2, 2], "strides": [1, 1], "auto_pad": "SAME_UPPER"}},
        {"op": "Concat", "inputs": ["m", "s"], "output": "c", "attrs": {"axis": 1}},
        {"op": "Div", "inputs": ["c", "half"], "output": "d", "attrs": {}},
        {"op": "Erf", "inputs": ["d"], "output": "e", "attrs": {}},
        {"op": "ReduceMean", "inputs": ["e"], "output": "mean", "attrs": {"axes": [2, 3], "keepdims": 1}},
        {"op": "Conv", "inputs": ["mean", "se.w"], "output": "se", "attrs": {"kernel_shape": [1, 1]}},
        {"op": "HardSigmoid", "inputs": ["se"], "output": "hs", "attrs": {"alpha": 0.2, "beta": 0.5}},
        {"op": "Mul", "inputs": ["e", "hs"], "output": "f", "attrs": {}},
        {"op": "Resize", "inputs": ["f"], "output": "u", "attrs": {"scale": [2.0, 2.0]}},
        {"op": "Identity", "inputs": ["u"], "output": "v", "attrs": {}},
        {"op": "ConvTranspose", "inputs": ["f", "up.w"], "output": "t", "attrs": {"strides": [2, 2]}},
        {"op": "Add", "inputs": ["t", "v"], "output": "t2", "attrs": {}},
        {"op": "Sigmoid", "inputs": ["t2"], "output": "y", "attrs": {}},
    ]
    return GraphDetector(steps, w, "y"), w


def test_steps_compute_what_onnx_defines() -> None:
    model, w = _graph()
    x = torch.randn(1, 3, 15, 21)
    a = F.relu(F.conv2d(x, w["c1.w"], w["c1.b"], stride=2, padding=1))          # 8 x 11
    s = F.conv2d(F.pad(a, (0, 1, 0, 1)), w["c2.w"])                               # SAME_UPPER: pad at the end
    m = F.max_pool2d(F.pad(a, (0, 1, 0, 1), value=-math.inf), 2, 1)
    e = torch.erf(torch.cat([m, s], 1) / 2)
    hs = torch.clamp(F.conv2d(e.mean((2, 3), keepdim=True), w["se.w"]) * 0.2 + 0.5, 0, 1)
    f = e * hs
    up = f.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)               # nearest, x2
    y = torch.sigmoid(F.conv_transpose2d(f, w["up.w"], stride=2) + up)
    with torch.no_grad():
        got = model(x)
    assert got.shape == (1, 8, 16, 22) and torch.allclose(got, y, atol=1e-6)


def test_a_saved_graph_loads_back(tmp_path) -> None:
    model, _ = _graph()
    path = tmp_path / "g.pt"
    save_graph_detector(model, str(path), {"name": "t", "version": "t", "input": "bgr-pm1"}, half=False)
    loaded, meta = load_any(path.read_bytes())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert meta["input"] == "bgr-pm1"


def test_unknown_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        GraphDetector([{"op": "Gather", "inputs": ["x"], "output": "y", "attrs": {}}], {}, "y")
