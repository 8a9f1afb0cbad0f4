"""The int8 first reading: which precision runs where, the version that names it, the graph built
from a weights file's ranges, and that torch's fake quantization (what QAT trains through) computes
what onnxruntime's int8 graph computes; which shipped file each precision reads (crnn.pt carries
no ranges, crnn-int8.pt does: docs/benchmarks.md "Session 19"). Ranges in the other tests are
observed on a few rendered lines (what `ocr_core.train.qat` starts from) or calibrated
(`ocr_core.train.calibrate`)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ocr_core import Predictor
from ocr_core.model import load_crnn, read_weights, write_weights
from ocr_core.predictor import DEFAULT_WEIGHTS
from ocr_core.preprocess import batch_lines, prepare_line
from ocr_core.quantized import (PW_CONV_COUNT, cpu_has_vnni, int8_graph, precision_tag, pw_conv_tensors,
                                resolve_precision)
from ocr_core.runtime import onnx_session, recognizer_graph

from .render import render_line


def test_vnni_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_has_vnni(info)
    info.write_text("processor : 0\nflags : fpu sse2 avx2 avx_vnni\n")
    assert cpu_has_vnni(info)
    info.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f\n")
    assert not cpu_has_vnni(info)
    assert not cpu_has_vnni(tmp_path / "missing")


def test_precision_auto_is_int8_only_where_it_reads_as_measured() -> None:
    assert resolve_precision("auto", "onnxruntime", True, vnni=True) == "int8"
    assert resolve_precision("auto", "onnxruntime", True, vnni=False) == "fp32"
    assert resolve_precision("auto", "onnxruntime", False, vnni=True) == "fp32"
    assert resolve_precision("auto", "torch", True, vnni=True) == "fp32"
    assert resolve_precision("fp32", "onnxruntime", True, vnni=True) == "fp32"
    assert resolve_precision("int8", "onnxruntime", True, vnni=False) == "int8"
    for engine, ranges in (("torch", True), ("onnxruntime", False)):
        with pytest.raises(ValueError, match="int8 needs"):
            resolve_precision("int8", engine, ranges)
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("int4", "onnxruntime", True)
    # int8 readings differ from fp32 ones and between CPUs with and without VNNI
    assert {precision_tag("fp32"), precision_tag("int8", vnni=True), precision_tag("int8", vnni=False)} == \
        {"", "-i8v", "-i8"}


@pytest.fixture(scope="module")
def observed(fp32_predictor: Predictor) -> tuple[torch.nn.Module, dict[str, list[float]], np.ndarray]:
    """The shipped model fake-quantized, its ranges observed on rendered lines, then frozen; and
    those lines as a batch."""
    from ocr_core.train.qat import activation_ranges, fake_quantized, set_observers

    model = fake_quantized(copy.deepcopy(fp32_predictor.model)).train()
    texts = ("发票代码 144031", "Total 1,280.00", "收货地址：上海市浦东新区", "Invoice No. 4821")
    x, _ = batch_lines([prepare_line(render_line(t, size=32)) for t in texts])
    with torch.no_grad():
        model.features(torch.from_numpy(x))
    set_observers(model, False)
    return model.eval(), activation_ranges(model), x


def test_the_int8_graph_quantizes_exactly_the_pw_convolutions(fp32_predictor: Predictor, observed) -> None:
    _, ranges, _ = observed
    assert len(ranges) == 2 * PW_CONV_COUNT
    graph = onnx.load_from_string(int8_graph(recognizer_graph(fp32_predictor.model), ranges))
    produced_by = {out: n for n in graph.graph.node for out in n.output}

    def dequantized(name: str) -> bool:
        return name in produced_by and produced_by[name].op_type == "DequantizeLinear"

    quantized = {n.name for n in graph.graph.node
                 if n.op_type == "Conv" and dequantized(n.input[0]) and dequantized(n.input[1])}
    assert quantized == {name for name, _, _ in pw_conv_tensors(graph).values()}
    assert len(quantized) == PW_CONV_COUNT
    # a graph whose convolutions are not named as the exporter names them is refused
    renamed = onnx.load_from_string(recognizer_graph(fp32_predictor.model))
    next(n for n in renamed.graph.node if n.name.endswith("/reduce/conv/Conv")).name = "renamed"
    with pytest.raises(ValueError, match="expected 26 pw convolutions in the graph, found 25"):
        int8_graph(renamed.SerializeToString(), ranges)


def test_a_weights_file_with_ranges_reads_in_int8_under_its_own_version(
        fp32_predictor: Predictor, observed, tmp_path: Path) -> None:
    _, meta = read_weights(str(DEFAULT_WEIGHTS))
    assert "int8" not in meta                    # the fp32 file: fp32 only, whatever is asked
    with pytest.raises(ValueError, match="int8 needs"):
        Predictor.load(DEFAULT_WEIGHTS, detector=False, precision="int8")
    assert Predictor.load(DEFAULT_WEIGHTS, detector=False, precision="auto").precision == "fp32"
    path = tmp_path / "crnn-int8.pt"
    write_weights(fp32_predictor.model, str(path), {**meta, "int8": {"convs": "pw", "ranges": observed[1]}})
    int8 = Predictor.load(path, detector=False, precision="int8")
    fp32 = Predictor.load(path, detector=False, precision="fp32")
    assert int8.precision == "int8" and fp32.precision == "fp32"
    assert int8.model_version == fp32.model_version + precision_tag("int8")
    for text in ("订单号 20261203 已支付", "Invoice No. 4821, total $96.40"):
        crop = render_line(text, size=32)
        assert int8.read(crop, single_line=True).text == text
        assert fp32.read(crop, single_line=True).text == text
    # the int8 graph really runs: the same line, other log-probabilities
    x, _ = batch_lines([prepare_line(crop)])
    assert not np.allclose(int8.runner(x)[1], fp32.runner(x)[1], atol=1e-4)


@pytest.mark.parametrize("vnni", [True, False])
def test_without_named_weights_int8_reads_the_int8_file_and_fp32_the_other(
        vnni: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped pair: crnn.pt (fp32) and crnn-int8.pt (fine-tuned for int8, with its ranges);
    which one a predictor loads follows the precision it resolves to, and the version names it."""
    import hashlib

    import ocr_core.predictor as predictor_module
    from ocr_core.predictor import DEFAULT_INT8_WEIGHTS

    _, meta = read_weights(str(DEFAULT_INT8_WEIGHTS))
    assert len(meta["int8"]["ranges"]) == 2 * PW_CONV_COUNT
    monkeypatch.setattr(predictor_module, "cpu_has_vnni", lambda: vnni)

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]

    auto = Predictor.load(detector=False, precision="auto")
    assert auto.precision == ("int8" if vnni else "fp32")
    assert digest(DEFAULT_INT8_WEIGHTS if vnni else DEFAULT_WEIGHTS) in auto.model_version
    assert auto.model_version.endswith("-i8v" if vnni else digest(DEFAULT_WEIGHTS))
    int8 = Predictor.load(detector=False, precision="int8")
    assert int8.precision == "int8" and digest(DEFAULT_INT8_WEIGHTS) in int8.model_version
    assert int8.model_version.endswith(precision_tag("int8", vnni=vnni))
    for kwargs in ({"precision": "fp32"}, {"precision": "auto", "engine": "torch"}):
        other = Predictor.load(detector=False, **kwargs)
        assert other.precision == "fp32" and other.model_version.endswith(digest(DEFAULT_WEIGHTS))
    for text in ("增值税专用发票 No. 4821", "收货地址：上海市浦东新区（东方路）"):
        assert int8.read(render_line(text, size=32), single_line=True).text == text


def test_a_missing_int8_file_is_named_or_read_around(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for int8 without its file: a clear error; `auto` reads the fp32 file instead."""
    import ocr_core.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "DEFAULT_INT8_WEIGHTS", tmp_path / "crnn-int8.pt")
    monkeypatch.setattr(predictor_module, "cpu_has_vnni", lambda: True)
    with pytest.raises(FileNotFoundError, match="int8 weights .* are missing"):
        Predictor.load(detector=False, precision="int8")
    auto = Predictor.load(detector=False, precision="auto")
    assert auto.precision == "fp32" and auto.weights_path == DEFAULT_WEIGHTS


def test_fake_quantization_computes_what_the_int8_graph_computes(fp32_predictor: Predictor, observed) -> None:
    """What QAT trains through is what onnxruntime runs: after the first mixer block the fake-
    quantized torch model and the int8 graph (built from its ranges) agree far more closely than
    either agrees with fp32 (later blocks drift apart: a value on a rounding boundary goes one way
    or the other, and its neighbours follow)."""
    model, ranges, x = observed
    graph = onnx.load_from_string(int8_graph(recognizer_graph(fp32_predictor.model), ranges))
    block1 = "/layers/layers.1/Add_output_0"
    assert any(block1 in n.output for n in graph.graph.node)
    graph.graph.output.append(onnx.helper.make_tensor_value_info(block1, onnx.TensorProto.FLOAT, None))
    got = onnx_session(graph.SerializeToString(), 1).run([block1], {"x": x})[0]
    with torch.no_grad():
        fake = model.backbone.layers[:2](torch.from_numpy(x)).numpy()
        fp32 = fp32_predictor.model.backbone.layers[:2](torch.from_numpy(x)).numpy()
    assert np.abs(fake - got).mean() < 0.1 * np.abs(fake - fp32).mean()


def test_calibrated_ranges_are_each_pw_convolutions_own_min_and_max(fp32_predictor: Predictor, tmp_path: Path) -> None:
    """Post-training ranges (`ocr_core.train.calibrate`): each named range is the min and max of that
    convolution's input or output over the lines (torch's own tensors, caught by hooks), and the
    calibrated copy of the weights reads in fp32 exactly as the original and in int8 correctly."""
    from ocr_core.model import MixerBlock
    from ocr_core.quantized import range_key
    from ocr_core.train.calibrate import pw_ranges, write_calibrated

    texts = ("发票代码 144031", "Total 1,280.00", "收货地址：上海市浦东新区")
    crops = [render_line(t, size=32) for t in texts]
    ranges = pw_ranges(fp32_predictor.model, crops)
    assert len(ranges) == 2 * PW_CONV_COUNT

    seen: dict[str, list[float]] = {}

    def hook(key: str) -> Callable[..., None]:
        def record(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            for end, t in (("in", inputs[0]), ("out", output)):
                lo, hi = seen.get(f"{key}/{end}", [np.inf, -np.inf])
                seen[f"{key}/{end}"] = [min(lo, float(t.min())), max(hi, float(t.max()))]
        return record

    handles = []
    for i, block in enumerate(fp32_predictor.model.backbone.layers):
        names = ("expand", "reduce") if isinstance(block, MixerBlock) else ("pw1", "pw2")
        for name in names:
            if hasattr(block, name):
                handles.append(getattr(block, name).conv.register_forward_hook(hook(range_key(i, name, "")[:-1])))
    try:
        with torch.no_grad():
            for crop in crops:
                x, _ = batch_lines([prepare_line(crop)])
                fp32_predictor.model.features(torch.from_numpy(x))
    finally:
        for h in handles:
            h.remove()
    assert seen.keys() == ranges.keys()
    for key, (lo, hi) in ranges.items():
        assert lo < hi
        np.testing.assert_allclose([lo, hi], seen[key], rtol=1e-3, atol=1e-3, err_msg=key)

    path = tmp_path / "calibrated.pt"
    write_calibrated(*load_crnn(str(DEFAULT_WEIGHTS)), path, ranges, how="test")
    state, meta = read_weights(str(path))
    original, _ = read_weights(str(DEFAULT_WEIGHTS))
    assert all(torch.equal(state[k], original[k]) for k in original) and state.keys() == original.keys()
    assert meta["int8"]["ranges"] == ranges
    int8 = Predictor.load(path, detector=False, precision="int8")
    for text in ("订单号 20261203 已支付", "Invoice No. 4821, total $96.40"):
        assert int8.read(render_line(text, size=32), single_line=True).text == text
