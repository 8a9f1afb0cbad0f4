"""Each stage of ocr_core alone: preprocess, decode, charset, model shapes, line finding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocr_core.charset import Charset
from ocr_core.decode import greedy_decode
from ocr_core.lines import find_lines
from ocr_core.model import CRNN, INPUT_HEIGHT, WIDTH_STRIDE, CRNNConfig, load_crnn, save_crnn
from ocr_core.predictor import DEFAULT_WEIGHTS
from ocr_core.preprocess import MAX_WIDTH, MIN_WIDTH, batch_lines, normalise_contrast, prepare_line, prepare_line_u8

from .render import render_line, render_lines

CHARSET_FILE = DEFAULT_WEIGHTS.parent / "charset.txt"


# ---------------------------------------------------------------- preprocess
def test_dark_mode_line_becomes_dark_text_on_light() -> None:
    light = prepare_line_u8(render_line("Total 42", dark=False))
    dark = prepare_line_u8(render_line("Total 42", dark=True))
    for img in (light, dark):
        assert img.shape[0] == INPUT_HEIGHT
        # the border is background: light after normalisation; ink is the minority and dark
        assert np.median(np.concatenate([img[0], img[-1]])) > 200
        assert (img < 100).mean() < 0.35 and (img < 100).any()
    assert abs(light.shape[1] - dark.shape[1]) <= WIDTH_STRIDE


def test_low_contrast_is_stretched() -> None:
    faint = 180 + (render_line("faint text")[:, :, 0] // 255) * 40  # ink 180, paper 220
    out = normalise_contrast(faint.astype(np.uint8))
    assert out.min() < 30 and out.max() > 225


def test_width_keeps_aspect_rounded_to_stride_and_clamped() -> None:
    x = prepare_line(np.full((64, 500, 3), 255, np.uint8))
    assert x.dtype == np.float32
    assert x.shape[0] == 32 and x.shape[1] % WIDTH_STRIDE == 0 and abs(x.shape[1] - 250) <= WIDTH_STRIDE
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert prepare_line(np.zeros((40, 2, 3), np.uint8)).shape[1] == MIN_WIDTH
    # a very long line is squeezed to the maximum width, never cut
    assert prepare_line(np.full((10, 20000, 3), 255, np.uint8)).shape[1] == MAX_WIDTH


def test_batch_pads_with_white_and_counts_steps() -> None:
    a, b = np.zeros((32, 40), np.float32) - 1, np.zeros((32, 100), np.float32) - 1
    batch, steps = batch_lines([a, b])
    assert batch.shape == (2, 1, 32, 100)
    assert (batch[0, 0, :, 40:] == 1.0).all() and (batch[0, 0, :, :40] == -1.0).all()
    assert steps.tolist() == [10, 25]


# ---------------------------------------------------------------- decode
def _log_probs(path: list[int], num_classes: int, p: float = 0.9) -> np.ndarray:
    lp = np.full((len(path), num_classes), np.log((1 - p) / (num_classes - 1)), np.float32)
    lp[np.arange(len(path)), path] = np.log(p)
    return lp


def test_greedy_decode_collapses_repeats_and_blanks() -> None:
    cs = Charset.from_string("ab ")
    a, b, sp = cs.index["a"], cs.index["b"], cs.index[" "]
    d = greedy_decode(_log_probs([a, a, 0, a, b, b, sp, 0, b], len(cs)), cs)
    assert d.text == "aab b"
    assert len(d.char_confidences) == 5 and d.char_steps == (0, 3, 4, 6, 8)
    assert d.confidence == pytest.approx(0.9, rel=1e-4)


def test_confidence_falls_with_an_uncertain_step() -> None:
    cs = Charset.from_string("ab")
    sure = greedy_decode(_log_probs([1, 0, 2], len(cs), 0.99), cs)
    lp = _log_probs([1, 0, 2], len(cs), 0.99)
    lp[2] = np.log([0.3, 0.3, 0.4])
    unsure = greedy_decode(lp, cs)
    assert sure.text == unsure.text == "ab"
    assert unsure.confidence < sure.confidence and unsure.char_confidences[1] == pytest.approx(0.4, rel=1e-4)
    assert greedy_decode(np.zeros((0, 3), np.float32), cs).text == ""


# ---------------------------------------------------------------- charset
def test_shipped_charset_covers_the_scope() -> None:
    cs = Charset.from_file(CHARSET_FILE)
    gb2312_level1 = [bytes([hi, lo]).decode("gb2312") for hi in range(0xB0, 0xD8) for lo in range(0xA1, 0xFF)
                     if not (hi == 0xD7 and lo > 0xF9)]
    assert len(gb2312_level1) == 3755
    missing = [c for c in gb2312_level1 if c not in cs.index]
    assert not missing, missing[:20]
    for c in "¥€£°℃·…—《》【】「」，。、；：！？（）" + "".join(chr(i) for i in range(0x20, 0x7F)):
        assert c in cs.index, repr(c)
    assert cs.classes[0] == "<blank>" and cs.encode("a b") == [cs.index["a"], cs.index[" "], cs.index["b"]]


def test_charset_file_round_trip(tmp_path) -> None:
    cs = Charset.from_string("甲 a,")
    cs.to_file(tmp_path / "c.txt")
    assert Charset.from_file(tmp_path / "c.txt").classes == cs.classes
    with pytest.raises(ValueError):
        Charset.from_string("aa")


# ---------------------------------------------------------------- model
def test_crnn_maps_variable_widths_to_quarter_width_steps() -> None:
    model = CRNN(CRNNConfig(num_classes=11)).eval()
    for w in (16, 100 // 4 * 4, 640):
        with torch.inference_mode():
            out = model(torch.zeros(2, 1, 32, w))
        assert out.shape == (2, w // WIDTH_STRIDE, 11)
        assert torch.allclose(out.exp().sum(-1), torch.ones(2, w // 4), atol=1e-4)


def test_save_load_round_trip_in_fp16(tmp_path) -> None:
    torch.manual_seed(0)
    model = CRNN(CRNNConfig(num_classes=7)).eval()
    save_crnn(model, str(tmp_path / "m.pt"), {"name": "t", "version": "1", "charset": "abcdef"})
    loaded, meta = load_crnn(str(tmp_path / "m.pt"))
    x = torch.randn(1, 1, 32, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=2e-2)
    assert meta["config"]["num_classes"] == 7 and meta["charset"] == "abcdef"
    state = torch.load(tmp_path / "m.pt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


def test_shipped_weights_are_fp16_and_small() -> None:
    assert DEFAULT_WEIGHTS.stat().st_size <= 20 * 1024 * 1024
    state = torch.load(DEFAULT_WEIGHTS, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


# ---------------------------------------------------------------- lines
def _centres(lines) -> list[tuple[float, float]]:
    return [(x + w / 2, y + h / 2) for x, y, w, h in (ln.box for ln in lines)]


@pytest.mark.parametrize("dark", [False, True])
def test_finds_each_line_in_reading_order(dark: bool) -> None:
    texts = ["Invoice No. 2026-0042", "发票号码 12345678", "Total: $1,234.56", "谢谢惠顾"]
    page = render_lines(texts, dark=dark)
    lines = find_lines(page)
    assert len(lines) == len(texts)
    ys = [c[1] for c in _centres(lines)]
    assert ys == sorted(ys)
    for ln in lines:
        x, y, w, h = ln.box
        assert ln.polygon == ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
        assert 0 <= x and 0 <= y and x + w <= page.shape[1] and y + h <= page.shape[0]


def test_two_columns_are_read_one_after_the_other() -> None:
    texts = ["left column one", "left column two", "left column three",
             "right column one", "right column two", "right column three"]
    page = render_lines(texts, columns=2, column_gap=160)
    cx = [c[0] for c in _centres(find_lines(page))]
    assert len(cx) == 6
    mid = page.shape[1] / 2
    assert [x < mid for x in cx] == [True] * 3 + [False] * 3


def test_blank_image_has_no_lines_worth_reading() -> None:
    lines = find_lines(np.full((200, 300, 3), 255, np.uint8))
    assert len(lines) <= 1


def test_heading_above_columns_and_a_margin_number_keep_column_order() -> None:
    from PIL import Image, ImageDraw

    from .render import font

    f, big = font("x", 24), font("x", 40)
    img = Image.new("RGB", (1400, 900), "white")
    d = ImageDraw.Draw(img)
    d.text((60, 40), "A heading that runs across both of the columns below", font=big, fill="black")
    left = [f"left column line number {i}" for i in range(12)]
    right = [f"right column line number {i}" for i in range(12)]
    for i, (a, b) in enumerate(zip(left, right)):
        d.text((60, 140 + i * 52), a, font=f, fill="black")
        d.text((700, 140 + i * 52), b, font=f, fill="black")
    d.text((1330, 860 - 30), "93", font=f, fill="black")       # folio in the right margin
    lines = find_lines(np.asarray(img))
    centres = _centres(lines)
    heading = [i for i, (x, y) in enumerate(centres) if y < 110]
    lefts = [i for i, (x, y) in enumerate(centres) if 110 < y < 800 and x < 650]
    rights = [i for i, (x, y) in enumerate(centres) if 110 < y < 800 and 650 <= x < 1300]
    assert heading == [0]
    assert len(lefts) == 12 and len(rights) == 12
    assert max(lefts) < min(rights)                            # the whole left column first
    assert [centres[i][1] for i in lefts] == sorted(centres[i][1] for i in lefts)


@pytest.mark.parametrize("leading", [24, 26])
def test_two_lines_whose_descenders_touch_the_next_ascenders_are_split(leading: int) -> None:
    from PIL import Image, ImageDraw

    from .render import font

    f = font("x", 28)
    img = Image.new("RGB", (620, 440), "white")
    d = ImageDraw.Draw(img)
    for i, t in enumerate(["The first line of the page", "Another plain line of text",
                           "A third one for the median", "Fourth line of running text",
                           "Fifth and last normal line"]):
        d.text((20, 20 + i * 50), t, font=f, fill="black")
    # "g", "p", "y" of one line touch "h", "l", "K" of the next: one blob with no empty row
    d.text((20, 280), "quietly gossiping pygmy judges", font=f, fill="black")
    d.text((20, 280 + leading), "held fast by bold Khaki flags", font=f, fill="black")
    lines = find_lines(np.asarray(img))
    assert len(lines) == 7
    last_two = lines[-2:]
    assert all(ln.box[3] < 45 for ln in last_two)               # one line each, not both
    assert last_two[0].box[1] < last_two[1].box[1]


def test_a_tall_heading_is_not_cut_through_its_glyphs() -> None:
    from PIL import Image, ImageDraw

    from .render import font

    img = Image.new("RGB", (900, 400), "white")
    d = ImageDraw.Draw(img)
    d.text((20, 20), "Big Heading Type", font=font("x", 72), fill="black")
    for i in range(4):
        d.text((20, 150 + i * 50), f"body text line number {i}", font=font("x", 28), fill="black")
    lines = find_lines(np.asarray(img))
    assert len(lines) == 5 and lines[0].box[3] > 60


def test_white_label_on_dark_cloth_is_read_with_the_label_polarity() -> None:
    # The page border is dark (cloth) but the text is dark on the white label.
    label = render_lines(["洗涤说明", "最高洗涤温度30℃", "不可漂白", "悬挂晾干"], size=12)  # small, as on labels
    h, w = label.shape[:2]
    rng = np.random.default_rng(0)
    import cv2

    cloth = cv2.GaussianBlur(rng.normal(0, 40, (h + 160, w + 160)), (0, 0), 6)  # folds, not speckle
    page = np.repeat((80 + cloth).clip(0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    page[80:80 + h, 80:80 + w] = label
    lines = find_lines(page)
    inside = [ln for ln in lines if ln.box[0] >= 70 and ln.box[1] >= 70
              and ln.box[0] + ln.box[2] <= w + 90 and ln.box[1] + ln.box[3] <= h + 90]
    assert len(inside) == 4
