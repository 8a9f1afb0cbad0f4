"""The photo text detector: converted weights, map → boxes, straightened crops, routing, reading."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from ocr_core.detect import (BOX_THRESHOLD, DEFAULT_DETECTOR_WEIGHTS, TextDetector, boxes_from_map,
                             flat_background_share, looks_like_photo, straighten)
from ocr_core.detector_model import DBNet, load_dbnet, save_dbnet
from ocr_core.evaluate import char_errors

from .render import render_lines


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    return TextDetector.load()


def photo_of_label(texts: list[str], *, angle: float = 4.0, seed: int = 0) -> np.ndarray:
    """A white label with text, turned by `angle` degrees, on blurred noisy cloth: a phone photo's
    texture and tilt with a known text."""
    label = render_lines(texts, size=26, gap=0.6)
    h, w = label.shape[:2]
    H, W = h * 3, w + 300
    rng = np.random.default_rng(seed)
    cloth = cv2.GaussianBlur(rng.normal(0, 50, (H, W, 3)), (0, 0), 3) + rng.normal(0, 12, (H, W, 3))
    page = (np.array([70, 95, 140]) + cloth).clip(0, 255).astype(np.uint8)
    y0, x0 = (H - h) // 2, (W - w) // 2
    page[y0:y0 + h, x0:x0 + w] = label
    rot = cv2.getRotationMatrix2D((W / 2, H / 2), angle, 1.0)
    return cv2.warpAffine(page, rot, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_shipped_detector_weights_are_small_fp16_with_fp32_norm_statistics() -> None:
    state = torch.load(DEFAULT_DETECTOR_WEIGHTS, map_location="cpu", weights_only=True)["state_dict"]
    assert DEFAULT_DETECTOR_WEIGHTS.stat().st_size < 3_000_000
    for k, v in state.items():
        if v.is_floating_point():
            # running variances reach ~5e7, past fp16's range: they must stay fp32
            assert v.dtype == (torch.float32 if "running_" in k else torch.float16), k
            assert torch.isfinite(v).all(), k


def test_save_load_round_trip_keeps_the_map(tmp_path) -> None:
    torch.manual_seed(0)
    model = DBNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 64, 96)
    save_dbnet(model, str(tmp_path / "db.pt"), {"version": "t"})
    loaded, meta = load_dbnet(str(tmp_path / "db.pt"))
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert meta["version"] == "t" and a.shape == (1, 1, 64, 96)
    assert float((a - b).abs().max()) < 2e-2


def test_a_tilted_region_becomes_one_grown_quad() -> None:
    prob = np.zeros((200, 400), np.float32)
    rect = ((200, 100), (240, 20), 8.0)                 # centre, (w, h), degrees
    cv2.fillPoly(prob, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 0.95)
    prob[10:13, 10:13] = 0.95                            # a speck: below the minimum side once shrunk
    (found,) = boxes_from_map(prob, 2.0, 2.0)             # map at half the image's scale
    tl, tr, br, bl = found.quad
    width, height = np.linalg.norm(tr - tl), np.linalg.norm(bl - tl)
    # grown by d = A * 1.5 / L on each side, then scaled by 2
    d = 240 * 20 * 1.5 / (2 * (240 + 20))
    assert width == pytest.approx(2 * (240 + 2 * d), rel=0.03)
    assert height == pytest.approx(2 * (20 + 2 * d), rel=0.08)
    assert np.degrees(np.arctan2(tr[1] - tl[1], tr[0] - tl[0])) == pytest.approx(8.0, abs=1.0)
    assert found.score >= BOX_THRESHOLD
    assert tl[0] < tr[0] and tl[1] < bl[1]               # clockwise from top-left


def test_a_faint_region_is_dropped() -> None:
    prob = np.zeros((100, 200), np.float32)
    prob[40:60, 20:180] = 0.4                             # above the pixel threshold, weak overall
    assert boxes_from_map(prob) == []


def test_straighten_turns_a_tilted_line_upright_with_padding() -> None:
    img = np.full((300, 500, 3), 255, np.uint8)
    rect = ((250, 150), (300, 40), -10.0)
    pts = cv2.boxPoints(rect)
    cv2.fillPoly(img, [np.round(pts).astype(np.int32)], (0, 0, 0))
    from ocr_core.detect import _order_corners

    crop = straighten(img, _order_corners(pts))
    h, w = crop.shape[:2]
    assert w > h                                          # reads as a horizontal line
    pad = 0.15 * 40 + 1
    assert w == pytest.approx(300 + 2 * pad, abs=2) and h == pytest.approx(40 + 2 * pad, abs=2)
    ink_rows = np.flatnonzero((crop.min(axis=2) < 128).mean(axis=1) > 0.5)
    # the dark bar fills the middle rows edge to edge: it came out level, not slanted
    assert len(ink_rows) >= 34 and ink_rows[0] >= pad - 2


def test_documents_are_not_photos_and_photos_are() -> None:
    doc = render_lines(["Invoice No. 2026-0042", "发票号码 12345678", "Total: $1,234.56"])
    assert flat_background_share(doc) > 0.8 and not looks_like_photo(doc)
    dark = render_lines(["Settings", "设置 2026-11-23"], dark=True)
    assert not looks_like_photo(dark)
    assert looks_like_photo(photo_of_label(["洗涤说明", "Total: $1,234.56"]))


def test_detector_finds_the_lines_of_a_tilted_label_in_order(detector: TextDetector) -> None:
    texts = ["洗涤说明 100%桑蚕丝", "Total: $1,234.56", "原版正品 今日活动价"]
    found = detector.find_lines(photo_of_label(texts))
    assert len(found) == len(texts)
    ys = [ln.box[1] for ln, _ in found]
    assert ys == sorted(ys)
    for ln, crop in found:
        assert len(ln.polygon) == 4 and crop.shape[1] > 3 * crop.shape[0]


def test_detector_sees_no_text_in_plain_texture(detector: TextDetector) -> None:
    rng = np.random.default_rng(1)
    cloth = cv2.GaussianBlur(rng.normal(0, 50, (300, 400, 3)), (0, 0), 3)
    assert detector.detect((np.array([70, 95, 140]) + cloth).clip(0, 255).astype(np.uint8)) == []


def test_detector_engines_agree(detector: TextDetector) -> None:
    """onnxruntime (the default) and torch eager give the same probability map at any page size."""
    torch_det = TextDetector(detector.model, engine="torch")
    assert (detector.runner.engine, torch_det.runner.engine) == ("onnxruntime", "torch")
    photo = photo_of_label(["发票号码 14659158", "Total 1,234.56"])
    for page in (photo, photo[:200, :333]):
        a, _, _ = detector.probability_map(page)
        b, _, _ = torch_det.probability_map(page)
        assert a.shape == b.shape and a.shape[0] % 32 == 0
        np.testing.assert_allclose(a, b, atol=1e-4)
        assert [d.quad.tolist() for d in detector.detect(page)] == [d.quad.tolist() for d in torch_det.detect(page)]


def test_detector_threads_sleep_when_done_and_the_recognizers_spin(detector: TextDetector, predictor) -> None:
    """Each onnxruntime session has its own thread pool: the detector's, spinning on after its one
    pass per page, would take a core from the recognizer that runs next (docs/benchmarks.md)."""
    def spinning(session) -> str:
        try:
            return session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        except Exception:       # not set: onnxruntime's default, spinning
            return "1"

    assert spinning(detector.runner.session) == "0"
    assert spinning(predictor.runner.session) == "1"
