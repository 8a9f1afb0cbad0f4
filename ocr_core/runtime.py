"""What runs a loaded CRNN's (and the text detector's) forward pass: onnxruntime on an export of our
own torch module (the default), or torch itself (a frozen TorchScript trace; the detector eager).

Both engines run the same weights and return the same thing, the greedy CTC path: for each time
step the best class and its log-probability (N x T each), never the N x T x C log-probabilities.
Reducing inside the graph saves copying ~3 MB per 320-column line out of the engine and a numpy
argmax over 18,710 classes. With it comes the CNN's last map, from which `fine` reads a line again
at twice the steps without running the CNN again (the predictor's second look at crowded lines).

Why onnxruntime: on this project's CPUs it runs the very same CNN about 1.5x faster than torch
(its 1x1 convolutions are GEMMs either way; onnxruntime fuses the bias/activation/elementwise ops
around them and has less per-op overhead). docs/benchmarks.md ("Recognizer runtime") has the figures
and the command. The export is made at load time from the weights file (~2 s), so there is still one
weights file and one model definition; texts agree between the engines (tests/unit/ocr_core).
"""
from __future__ import annotations

import copy
import io
import logging
import warnings
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ocr_core.decode import BLANK_PENALTY
from ocr_core.model import CRNN, FEATURE_CHANNELS, INPUT_HEIGHT
from ocr_core.preprocess import TRAIN_WIDTH

logger = logging.getLogger(__name__)

ENGINES = ("onnxruntime", "torch")
DEFAULT_ENGINE = "onnxruntime"
# Example input for tracing/export: two lines of the training width; batch size and width stay
# dynamic.
_EXAMPLE_SHAPE = (2, 3, INPUT_HEIGHT, TRAIN_WIDTH)


class LineRunner(Protocol):
    """N x 3 x 48 x W float32 in [-1, 1] → (best class N x T int64, its log-probability N x T
    float32, the CNN's last map N x 384 x 3 x W/4 float32); `fine` reads such maps again at twice
    the steps (`BestPath`, `FinePath`)."""

    engine: str

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def fine(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class _Greedy(nn.Module):
    """The classifier and the greedy path over a sequence model's output, the blank's logit lowered
    by `blank_penalty` (`ocr_core.decode.BLANK_PENALTY`)."""

    def __init__(self, model: CRNN, blank_penalty: float = BLANK_PENALTY) -> None:
        super().__init__()
        self.model = model
        # The penalty goes into a copy of the classifier's bias (class 0 is the blank): no extra
        # operator in the graph, and the model's own parameters stay as they were loaded.
        self.head = copy.deepcopy(model.head)
        with torch.no_grad():
            self.head.bias[0] -= blank_penalty

    def best_path(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N x T x 384 CNN features → (best class, its log-probability), N x T each."""
        probs = torch.softmax(self.head(self.model.sequence(feats)), dim=-1)   # N x T x C
        best, ids = probs.max(dim=-1)                                          # N x T, N x T
        # log of the best probability: a fused softmax and one max cost ~1 ms per 320-column
        # line in onnxruntime, a log-sum-exp over the 18,710 classes ~7 ms.
        return ids, torch.log(best)


class BestPath(_Greedy):
    """The CRNN reduced to its greedy path: argmax class and log-probability per time step, and
    the CNN's last map (`CRNN.columns`) for a second look that need not run the CNN again."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cols = self.model.columns(x)                                  # N x 384 x 3 x W/4
        ids, logp = self.best_path(self.model.features_from(cols))
        return ids, logp, cols


class FinePath(_Greedy):
    """The greedy path of a line read again from `BestPath`'s map at twice the steps (the CNN's
    last pooling at step 1: `RecBackbone.pool`): N x 384 x 3 x W/4 → N x (W/4 - 1) each. Only the
    BiLSTM and the classifier run: ~8 ms for a camera-like dev line on one thread, against ~20 ms
    for its first reading on two (docs/benchmarks.md, "Session 16")."""

    def forward(self, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.best_path(self.model.features_from(cols, step=1))


class TorchRunner:
    """A channels-last copy (the model's own parameters stay as they are), traced and frozen:
    BatchNorm folded, oneDNN convolutions."""

    engine = "torch"

    def __init__(self, model: CRNN) -> None:
        example = torch.zeros(*_EXAMPLE_SHAPE).contiguous(memory_format=torch.channels_last)
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarning: the shape asserts are checked once here
            # Module.to takes memory_format at run time; torch's stubs do not list it.
            net = BestPath(copy.deepcopy(model)).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self.net = torch.jit.freeze(torch.jit.trace(net, example, check_trace=False))
            # The same copy serves the read from the map (its parameters are only read).
            cols = net.model.columns(example)
            fine = FinePath(net.model).eval()
            self.fine_net = torch.jit.freeze(torch.jit.trace(fine, cols.contiguous(), check_trace=False))

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ids, lp, cols = self.net(t)
        return ids.numpy(), lp.numpy(), cols.contiguous().numpy()

    def fine(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            ids, lp = self.fine_net(torch.from_numpy(np.ascontiguousarray(cols, dtype=np.float32)))
        return ids.numpy(), lp.numpy()


def export_onnx(net: nn.Module, example: torch.Tensor, outputs: list[str],
                dynamic_axes: dict[str, dict[int, str]]) -> bytes:
    """A torch module in eval mode (one input "x") as an ONNX graph, with the named axes dynamic.
    The exporter only traces the module: its parameters are read, never changed, so no copy."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        # The exporter writes to a file object as well as to a path; its stubs list paths only.
        torch.onnx.export(net, (example,), buf,  # type: ignore[arg-type]
                          dynamo=False, opset_version=17, input_names=["x"],
                          output_names=outputs, dynamic_axes=dynamic_axes)
    return fold_pads(buf.getvalue())


def fold_pads(graph: bytes) -> bytes:
    """Move each spatial `Pad` into the pads of the one Conv (padding with 0) or MaxPool (padding
    with -inf) that reads it: the same arithmetic, one node fewer. torch has no asymmetric padding,
    so the stem's bottom/right pads before its two 2x2 convolutions and its 2x2 max-pool are
    exported as Pad nodes, and onnxruntime cannot run a Pad in its blocked (NCHWc) layout: the
    stem's largest feature maps were reordered out of that layout and back around each of them
    (docs/benchmarks.md "Session 12" has the cost)."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    model = onnx.load_from_string(graph)
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def constant(name: str) -> np.ndarray | None:
        """The value of a tensor computed from constants only (the exporter builds pads that
        way), else None."""
        if not name:
            return None
        if name in initializers:
            return initializers[name]
        needed, todo = [], [name]
        while todo:
            n = producer.get(todo.pop())
            if n is None:
                return None
            needed.append(n)
            todo += [i for i in n.input if i and i not in initializers]
        inputs = {i for n in needed for i in n.input}
        sub = onnx.helper.make_graph(
            list(reversed(needed)), "constant", [],
            [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)],
            [i for i in model.graph.initializer if i.name in inputs])
        evaluator = ReferenceEvaluator(onnx.helper.make_model(sub, opset_imports=model.opset_import))
        outputs = evaluator.run(None, {})
        assert isinstance(outputs, list)          # a list for unnamed outputs, a dict when named
        return np.asarray(outputs[0])

    folded = 0
    for pad in nodes:
        users = consumers.get(pad.output[0], [])
        if pad.op_type != "Pad" or len(users) != 1 or users[0].op_type not in ("Conv", "MaxPool"):
            continue
        if any(a.name == "mode" and a.s not in (b"", b"constant") for a in pad.attribute):
            continue
        user = users[0]
        pads = constant(pad.input[1])
        value = constant(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
        wanted = 0.0 if user.op_type == "Conv" else -np.inf
        # 4-d pads [x1_begin, x2_begin, x3_begin, x4_begin, x1_end, ...]: N and C must stay unpadded.
        if (pads is None or value is None or pads.shape != (8,) or (pads < 0).any() or pads[[0, 1, 4, 5]].any()
                or float(value) != wanted
                or any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in user.attribute)):
            continue
        if not any(a.name == "pads" for a in user.attribute):
            user.attribute.append(onnx.helper.make_attribute("pads", [0, 0, 0, 0]))
        attr = next(a for a in user.attribute if a.name == "pads")    # the message held by the node
        old = list(attr.ints)
        attr.ClearField("ints")
        attr.ints.extend([old[0] + int(pads[2]), old[1] + int(pads[3]), old[2] + int(pads[6]), old[3] + int(pads[7])])
        user.input[0] = pad.input[0]
        model.graph.node.remove(pad)
        folded += 1
    if not folded:
        return graph
    # The constants that computed the folded pads now feed nothing: drop them.
    graph_outputs = {o.name for o in model.graph.output}
    while True:
        read = {i for n in model.graph.node for i in n.input} | graph_outputs
        dead = [n for n in model.graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    logger.debug("folded %d Pad node(s) into their readers", folded)
    return model.SerializeToString()


def onnx_session(graph: bytes, threads: int, *, spin: bool = True) -> Any:
    """An onnxruntime CPU session: `threads` intra-op threads (0: onnxruntime's default, one per
    core), no inter-op pool (one request at a time per worker process). `spin`: whether its worker
    threads busy-wait for the next operator after one ends (onnxruntime's default) instead of
    sleeping."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


def recognizer_graph(model: CRNN) -> bytes:
    """The ONNX graph `OnnxRunner` runs first: `BestPath(model)`, batch size and width dynamic."""
    return export_onnx(BestPath(model).eval(), torch.zeros(*_EXAMPLE_SHAPE), ["ids", "logp", "cols"],
                       {"x": {0: "n", 3: "w"}, "ids": {0: "n", 1: "t"}, "logp": {0: "n", 1: "t"},
                        "cols": {0: "n", 3: "c"}})


def fine_graph(model: CRNN) -> bytes:
    """The ONNX graph of `FinePath(model)`: `recognizer_graph`'s map read again at twice the steps."""
    example = torch.zeros(_EXAMPLE_SHAPE[0], FEATURE_CHANNELS, 3, TRAIN_WIDTH // 4)
    return export_onnx(FinePath(model).eval(), example, ["ids", "logp"],
                       {"x": {0: "n", 3: "c"}, "ids": {0: "n", 1: "t"}, "logp": {0: "n", 1: "t"}})


class OnnxRunner:
    """onnxruntime on an export of `BestPath(model)` and one of `FinePath(model)`, batch size and
    width dynamic. With `int8_ranges` the first graph's 1x1 convolutions run in int8
    (`ocr_core.quantized`); the read from the map stays fp32."""

    engine = "onnxruntime"

    def __init__(self, model: CRNN, *, threads: int = 1,
                 int8_ranges: dict[str, list[float]] | None = None) -> None:
        graph = recognizer_graph(model)
        if int8_ranges is not None:
            from ocr_core.quantized import int8_graph

            graph = int8_graph(graph, int8_ranges)
        self.session = onnx_session(graph, threads)
        # One thread, so no pool of its own: the BiLSTM's steps are sequential anyway (a second
        # thread did nothing for it, docs/benchmarks.md "Session 11"), and a second pool of
        # spinning threads would take the cores from the first session's.
        self.fine_session = onnx_session(fine_graph(model), 1)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, lp, cols = self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
        return ids, lp, cols

    def fine(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids, lp = self.fine_session.run(None, {"x": np.ascontiguousarray(cols, dtype=np.float32)})
        return ids, lp


class MapRunner(Protocol):
    """A text detector's forward pass: N x 3 x H x W float32 → N x 1 x H x W probabilities."""

    engine: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchMapRunner:
    engine = "torch"

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


class OnnxMapRunner:
    """onnxruntime on an export of the detector: ~2.8x torch's eager speed on a 640 x 640 page,
    one thread (docs/benchmarks.md)."""

    engine = "onnxruntime"

    def __init__(self, model: nn.Module, *, threads: int = 1) -> None:
        graph = export_onnx(model.eval(), torch.zeros(1, 3, 320, 320), ["prob"],
                            {"x": {0: "n", 2: "h", 3: "w"}, "prob": {0: "n", 2: "h", 3: "w"}})
        # Its threads sleep when it is done instead of spinning: each session has its own pool,
        # and the detector's threads, spinning on after a page's one detector pass, took a core
        # from the recognizer's first batches (real Chinese pages ~15 % faster without;
        # docs/benchmarks.md, "Session 8").
        self.session = onnx_session(graph, threads, spin=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]


def _check(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")


def make_map_runner(model: nn.Module, engine: str = DEFAULT_ENGINE, *, threads: int = 1) -> MapRunner:
    _check(engine)
    if engine == "onnxruntime":
        return OnnxMapRunner(model, threads=threads)
    return TorchMapRunner(model)


def make_runner(model: CRNN, engine: str = DEFAULT_ENGINE, *, threads: int = 1,
                int8_ranges: dict[str, list[float]] | None = None) -> LineRunner:
    """`int8_ranges`: run the first reading in int8 at those ranges (onnxruntime only)."""
    _check(engine)
    if engine == "onnxruntime":
        return OnnxRunner(model, threads=threads, int8_ranges=int8_ranges)
    if int8_ranges is not None:
        raise ValueError("int8 runs in onnxruntime only")
    return TorchRunner(model)
