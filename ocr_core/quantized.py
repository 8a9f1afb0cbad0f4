"""The recognizer's first reading in int8: its CNN's 26 1x1 convolutions (the mixer blocks' expand
and reduce, the downsamples' pw1 and pw2, "pw") run as onnxruntime QDQ int8, the rest in fp32.

The graph is built at load time from the fp32 export (`ocr_core.runtime.recognizer_graph`) and the
activation ranges stored in the weights file (`meta["int8"]["ranges"]`), which quantization-aware
fine-tuning learned (`ocr_core.train.qat`) or post-training calibration measured
(`ocr_core.train.calibrate`): per tensor, u8 with a zero point, for each pw convolution's input
and output; weights s8, symmetric per output channel over [-127, 127], taken from the weights
themselves. The product ships two files: `crnn.pt`, read in fp32, and `crnn-int8.pt`, the same
model fine-tuned to read through int8 rounding, read when the precision resolves to int8
(`ocr_core.predictor.DEFAULT_INT8_WEIGHTS`).

Why only the pw convolutions: on a CPU with VNNI the graph with them in int8 runs at 0.75-0.86x
the fp32 time; every convolution in int8 ran at ~0.70x but read clearly worse (post-training: 168
held-out errors against 152 and fp32's 148; docs/benchmarks.md, "Session 17" and "Session 18").
Why "auto" asks for VNNI: without it the u8 x s8 instruction onnxruntime uses (AVX2's) sums
pairs of products in 16 bits with saturation, so the same graph may read differently there, and
no such CPU was measured; a reading is tied to its
precision and CPU kind through the model version either way (`precision_tag`). The default is
"auto": the shipped int8 weights (`ocr_core.predictor.DEFAULT_INT8_WEIGHTS`, fine-tuned for it)
passed every check written for them on held-out lines and pages and the dev sets, and read lines
faster than fp32 (docs/benchmarks.md, "Session 19"); without VNNI the fp32 weights are read.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "int8", "fp32")
DEFAULT_PRECISION = "auto"
PW_CONVS = ("expand", "reduce", "pw1", "pw2")    # the 1x1 convolutions quantized, by module name
PW_CONV_COUNT = 26                               # 11 mixer blocks x 2 + 2 downsamples x 2


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has the int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"avx512_vnni", "avx_vnni"})
    return False


def resolve_precision(precision: str, engine: str, has_ranges: bool, vnni: bool | None = None) -> str:
    """The precision the first reading runs at, "int8" or "fp32". "auto": int8 where onnxruntime
    runs the recognizer, the weights carry int8 ranges and the CPU has VNNI. "int8" insists (an
    error where it cannot be), "fp32" never quantizes."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return "fp32"
    possible = engine == "onnxruntime" and has_ranges
    if precision == "int8":
        if not possible:
            raise ValueError("int8 needs the onnxruntime engine and weights with int8 ranges")
        return "int8"
    return "int8" if possible and (cpu_has_vnni() if vnni is None else vnni) else "fp32"


def precision_tag(precision: str, vnni: bool | None = None) -> str:
    """The model version's suffix for a precision: int8 readings differ from fp32 ones, and
    between CPUs with and without VNNI."""
    if precision == "fp32":
        return ""
    return "-i8v" if (cpu_has_vnni() if vnni is None else vnni) else "-i8"


def range_key(layer: int, conv: str, end: str) -> str:
    """The name of a stored activation range: "layers.<i>/<conv>/in" or ".../out"."""
    return f"layers.{layer}/{conv}/{end}"


def pw_conv_tensors(model) -> dict[str, tuple[str, str, str]]:
    """An ONNX model of the first reading → for each pw convolution, "layers.<i>/<conv>" →
    (node name, input tensor, output tensor). The exporter names nodes by module path
    (".../layers.<i>/<conv>/conv/Conv"); the squeeze-excite's own 1x1 convolutions are not pw."""
    out = {}
    for n in model.graph.node:
        parts = n.name.strip("/").split("/")
        if (n.op_type == "Conv" and len(parts) >= 4 and parts[-2:] == ["conv", "Conv"]
                and parts[-3] in PW_CONVS and parts[-4].startswith("layers.") and "se" not in parts):
            out[f"{parts[-4]}/{parts[-3]}"] = (n.name, n.input[0], n.output[0])
    if len(out) != PW_CONV_COUNT:
        raise ValueError(f"expected {PW_CONV_COUNT} pw convolutions in the graph, found {len(out)}")
    return out


def int8_graph(graph: bytes, ranges: Mapping[str, Sequence[float]]) -> bytes:
    """The fp32 first-reading graph with its pw convolutions in QDQ int8 at the given ranges."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(graph))
    convs = pw_conv_tensors(model)
    tensors: dict[str, TensorData] = {}
    for key, (_node, t_in, t_out) in convs.items():
        for end, tensor in (("in", t_in), ("out", t_out)):
            lo, hi = ranges[f"{key}/{end}"]
            tensors[tensor] = TensorData(lowest=np.float32(lo), highest=np.float32(hi))
    data = TensorsData(CalibrationMethod.MinMax, tensors)
    # per-channel s8 weights (symmetric: [-127, 127]), u8 activations, only these nodes
    quantizer = QDQQuantizer(model, per_channel=True, reduce_range=False, weight_qType=QuantType.QInt8,
                             activation_qType=QuantType.QUInt8, tensors_range=data,
                             nodes_to_quantize=[node for node, _, _ in convs.values()], nodes_to_exclude=[],
                             op_types_to_quantize=["Conv"], extra_options={})
    quantizer.quantize_model()
    logger.debug("int8 graph: %d pw convolutions quantized", len(convs))
    return quantizer.model.model.SerializeToString()
