"""The export's graph edit: Pad nodes folded into the Conv / MaxPool that reads them."""
from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from ocr_core import Predictor
from ocr_core.runtime import export_onnx, onnx_session, recognizer_graph


class Padded(nn.Module):
    """The stem's pattern (bottom/right pad before a 2x2 conv and a 2x2 max-pool) beside pads that
    must stay: reflect mode, and a zero pad in front of a max-pool (not what the pool pads with)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 2)
        self.conv_padded = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(F.pad(x, (0, 1, 0, 1)))
        b = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, 1)
        c = self.conv_padded(F.pad(x, (2, 0, 1, 0)))[:, :, :, : x.shape[3]]   # adds to its own pads
        d = F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 2, 1)                       # zeros: not a pool's pad
        e = F.pad(x, (1, 0, 1, 0), mode="reflect")[:, :, 1:, 1:]
        return torch.cat([a, b, c[:, :, 1:], d, e], dim=1)


def _ops(graph: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_from_string(graph).graph.node]


def test_pads_move_into_their_readers_and_the_results_stay_the_same() -> None:
    net = Padded().eval()
    graph = export_onnx(net, torch.zeros(1, 3, 10, 14), ["y"], {"x": {0: "n", 3: "w"}})
    # The conv's two pads and the -inf pad before the pool are folded; the zero pad before a pool
    # and the reflect pad are not (their arithmetic differs from the reader's own padding).
    assert _ops(graph).count("Pad") == 2
    pools = [n for n in onnx.load_from_string(graph).graph.node if n.op_type == "MaxPool"]
    assert sorted(list(a.ints) for n in pools for a in n.attribute if a.name == "pads") == [[0, 0, 0, 0], [0, 0, 1, 1]]
    session = onnx_session(graph, 1)
    torch.manual_seed(0)
    for w in (14, 31):
        x = torch.randn(2, 3, 10, w)
        with torch.no_grad():
            want = net(x).numpy()
        np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], want, atol=1e-5)


def test_the_recognizers_graph_keeps_no_pad_node(predictor: Predictor) -> None:
    """The stem's three pads (two convolutions, one max-pool) are the only Pads the CRNN exports;
    all are folded, so onnxruntime keeps the stem in its blocked layout."""
    ops = _ops(recognizer_graph(predictor.model))
    assert "Pad" not in ops and ops.count("MaxPool") == 1
