"""Each stage of ocr_core alone: preprocess, decode, charset, model shapes, line finding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ocr_core.charset import Charset
from ocr_core.decode import greedy_decode
from ocr_core.lines import find_lines
from ocr_core.model import CRNN, INPUT_HEIGHT, WIDTH_STRIDE, CRNNConfig, load_crnn, save_crnn
from ocr_core.predictor import DEFAULT_WEIGHTS
from ocr_core.preprocess import (MAX_WIDTH, MIN_WIDTH, PAD_MARGIN, TRAIN_WIDTH, batch_lines, batch_width, prepare_line,
                                 prepare_line_u8)

from .render import render_line, render_lines

TEXT_CHARSET = Path(__file__).resolve().parents[3] / "ocr_core" / "train" / "text_charset.txt"


# ---------------------------------------------------------------- preprocess
def test_colour_is_kept_as_bgr_scaled_to_plus_minus_one() -> None:
    red = np.zeros((40, 80, 3), np.uint8)
    red[:, :, 0] = 255                                    # pure red, RGB
    x = prepare_line(red)
    assert x.shape[:2] == (3, INPUT_HEIGHT) and x.dtype == np.float32
    # the CNN was trained on BGR: red is the last channel
    assert np.allclose(x[2], 1.0) and np.allclose(x[0], -1.0) and np.allclose(x[1], -1.0)
    grey = prepare_line(np.full((40, 80), 128, np.uint8))
    assert np.allclose(grey[0], grey[1]) and np.allclose(grey[1], grey[2])


def test_dark_mode_is_not_inverted() -> None:
    # PP-OCRv6's CNN reads dark mode as it is; inverting would only move it off its training data
    dark = prepare_line_u8(render_line("Total 42", dark=True))
    assert dark.shape[0] == INPUT_HEIGHT and np.median(dark) < 80


def test_width_keeps_aspect_and_is_clamped() -> None:
    x = prepare_line(np.full((64, 500, 3), 255, np.uint8))
    assert x.shape == (3, INPUT_HEIGHT, 375)             # ceil(500 * 48 / 64): never rounded down
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert prepare_line(np.zeros((40, 2, 3), np.uint8)).shape[2] == MIN_WIDTH
    # a very long line is squeezed to the maximum width, never cut
    assert prepare_line(np.full((10, 20000, 3), 255, np.uint8)).shape[2] == MAX_WIDTH


def test_batch_pads_with_mid_grey_past_its_widest_line_and_counts_steps() -> None:
    a, b = np.full((3, INPUT_HEIGHT, 40), -1, np.float32), np.full((3, INPUT_HEIGHT, 100), -1, np.float32)
    batch, steps = batch_lines([a, b])
    # a short batch: its widest line plus the margin (4 CTC steps), not the training width
    assert PAD_MARGIN == 32 and batch.shape == (2, 3, INPUT_HEIGHT, 136)
    assert (batch[0, :, :, 40:] == 0.0).all() and (batch[0, :, :, :40] == -1.0).all()
    assert (batch[1, :, :, 100:] == 0.0).all()
    # the margin never takes a batch past the training width, and a wider line is never cut
    assert batch_width([300]) == TRAIN_WIDTH == 320 and batch_width([320]) == 320 and batch_width([321]) == 328
    assert steps.tolist() == [5, 13]                      # ceil(w / 8): a partial last step counts
    wide, _ = batch_lines([np.zeros((3, INPUT_HEIGHT, 501), np.float32)])
    assert wide.shape[3] == 504 and wide.shape[3] % WIDTH_STRIDE == 0


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
@pytest.fixture(scope="module")
def shipped() -> tuple:
    return load_crnn(str(DEFAULT_WEIGHTS))


def test_shipped_classes_cover_the_scope(shipped) -> None:
    model, meta = shipped
    cs = Charset(list(meta["charset"]))
    assert len(cs) == model.cfg.num_classes
    gb2312_level1 = [bytes([hi, lo]).decode("gb2312") for hi in range(0xB0, 0xD8) for lo in range(0xA1, 0xFF)
                     if not (hi == 0xD7 and lo > 0xF9)]
    assert len(gb2312_level1) == 3755
    missing = [c for c in gb2312_level1 if c not in cs.index]
    # PP-OCRv6's dictionary has no 硷 (it writes the character as 碱): docs/benchmarks.md
    assert missing == ["硷"], missing[:20]
    for c in "¥€£°℃·…—《》【】「」，。、；：！？（）" + "".join(chr(i) for i in range(0x20, 0x7F)):
        assert c in cs.index, repr(c)
    # blank first, the space a class of its own (without it words run together)
    assert cs.classes[0] == "<blank>" and cs.encode("a b") == [cs.index["a"], cs.index[" "], cs.index["b"]]


def test_training_text_alphabet_round_trips() -> None:
    cs = Charset.from_file(TEXT_CHARSET)
    assert len(cs) > 6000 and " " in cs.index


def test_charset_file_round_trip(tmp_path) -> None:
    cs = Charset.from_string("甲 a,")
    cs.to_file(tmp_path / "c.txt")
    assert Charset.from_file(tmp_path / "c.txt").classes == cs.classes
    with pytest.raises(ValueError):
        Charset.from_string("aa")


# ---------------------------------------------------------------- model
def test_crnn_maps_variable_widths_to_eighth_width_steps() -> None:
    model = CRNN(CRNNConfig(num_classes=11, hidden=16)).eval()
    for w in (64, 320, 648):
        with torch.inference_mode():
            out = model(torch.zeros(2, 3, INPUT_HEIGHT, w))
        assert out.shape == (2, w // WIDTH_STRIDE, 11)
        assert torch.allclose(out.exp().sum(-1), torch.ones(2, w // WIDTH_STRIDE), atol=1e-4)


def test_save_load_round_trip_in_fp16(tmp_path) -> None:
    torch.manual_seed(0)
    model = CRNN(CRNNConfig(num_classes=7, hidden=16)).eval()
    save_crnn(model, str(tmp_path / "m.pt"), {"name": "t", "version": "1", "charset": "abcdef"})
    loaded, meta = load_crnn(str(tmp_path / "m.pt"))
    x = torch.randn(1, 3, INPUT_HEIGHT, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=5e-2)
    assert meta["config"] == {"num_classes": 7, "hidden": 16, "proj": 120} and meta["charset"] == "abcdef"
    state = torch.load(tmp_path / "m.pt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_shipped_weights_are_fp16_small_and_a_crnn(int8: bool) -> None:
    from ocr_core.predictor import DEFAULT_INT8_WEIGHTS

    path = DEFAULT_INT8_WEIGHTS if int8 else DEFAULT_WEIGHTS
    assert path.stat().st_size <= 20 * 1024 * 1024
    state = torch.load(path, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    model, _ = load_crnn(str(path))
    # A CRNN: convolutions, then a recurrent sequence model (a BiLSTM), then linear layers; no
    # attention anywhere.
    assert isinstance(model.rnn, torch.nn.LSTM) and model.rnn.bidirectional and model.rnn.num_layers == 2
    kinds = {type(m).__name__ for m in model.modules()}
    assert not {n for n in kinds if "Attention" in n or "Transformer" in n}, kinds
    assert {"Conv2d", "LSTM", "Linear"} <= kinds


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


# Lines whose first or last character is too flat or too small to pass as a glyph ("一", "-",
# "…", ",", ":", "。"): the finder's box stops short of it, and with only the box's own padding the
# recognizer dropped it (1 of these 8 lines read with both ends at 20 and 22 px).
EDGE_LINES = ["一贫如洗人，二哥俱。内骨骼南通文工团。", "五指依律…", "-20.0℃", "920 Johnson Fall, Garcialand,",
              "二胡吸收地板厂欧盟崇祯尚善哭叫声椁", "Account No.: 2020年5月15日 Gate:", "宗厚。作用遥测…",
              "发育封袁宗皋一张。"]


@pytest.mark.parametrize("size", [20, 22])
def test_a_lines_first_and_last_characters_are_read(predictor, size: int) -> None:
    got = predictor.read(render_lines(EDGE_LINES, size=size)).text.split("\n")
    assert len(got) == len(EDGE_LINES)
    ends = [(g[:1], g[-1:]) for g in got]
    assert ends == [(r[:1], r[-1:]) for r in EDGE_LINES], got


def test_a_lines_box_reaches_over_its_end_marks_but_not_over_a_rule() -> None:
    from PIL import Image, ImageDraw

    from .render import font

    img = Image.new("RGB", (700, 200), "white")
    d = ImageDraw.Draw(img)
    f = font("宗厚", 28)
    d.text((40, 30), "宗厚。作用遥测…", font=f, fill="black")
    ends = d.textbbox((40, 30), "宗厚。作用遥测…", font=f)
    d.text((40, 110), "-20.0", font=font("x", 28), fill="black")
    starts = d.textbbox((40, 110), "-20.0", font=font("x", 28))
    # A table rule a little right of a third line, and a dot beyond the rule.
    d.text((400, 110), "数量", font=f, fill="black")
    cell = d.textbbox((400, 110), "数量", font=f)
    d.line([(cell[2] + 12, 90), (cell[2] + 12, 170)], fill="black", width=2)
    d.ellipse([cell[2] + 20, 140, cell[2] + 24, 144], fill="black")
    lines = find_lines(np.asarray(img))
    assert len(lines) == 3
    first, second, third = sorted(lines, key=lambda ln: (ln.box[1] // 50, ln.box[0]))
    assert first.box[0] + first.box[2] >= ends[2] - 1          # the ellipsis is inside the box
    assert second.box[0] <= starts[0] + 1                      # and the leading dash
    assert third.box[0] + third.box[2] < cell[2] + 12          # the rule is not


def test_a_leader_rule_after_a_line_does_not_widen_its_box() -> None:
    """A long flat rule beside a line (a leader to a price, a blank to fill in) is not one of the
    line's own marks: the box stays on the text."""
    from PIL import Image, ImageDraw

    from .render import font

    img = Image.new("RGB", (600, 120), "white")
    d = ImageDraw.Draw(img)
    f = font("合计", 28)
    d.text((100, 30), "合计金额", font=f, fill="black")
    text = d.textbbox((100, 30), "合计金额", font=f)
    mid = (text[1] + text[3]) // 2
    d.line([(text[2] + 8, mid), (text[2] + 300, mid)], fill="black", width=2)
    lines = find_lines(np.asarray(img))
    assert len(lines) == 1
    x, _, w, _ = lines[0].box
    pad = 0.15 * 1.3 * (text[3] - text[1]) + 6       # the box's own padding, generously
    assert x + w <= text[2] + pad, (lines[0].box, text)


def test_a_mark_between_two_cells_is_reached_only_by_the_nearer() -> None:
    """A dash in the gap between two cells of a row (" -双模交互" after a cell) is read once: the
    cell it sits against reaches over it, the other stops halfway."""
    from ocr_core.lines import _reach

    marks = np.zeros((20, 120), bool)
    stops = np.zeros((20, 120), bool)
    left, right = (10, 5, 30, 10), (60, 5, 30, 10)
    for x, y, w, h in (left, right):
        stops[y:y + h, x:x + w] = True
    marks[9:11, 52:57] = True                       # the dash: 12 columns from the left cell, 3 from the right
    assert _reach(marks, stops, left, 30) == (0, 0)
    assert _reach(marks, stops, right, 30) == (8, 0)
    # The right cell just beyond the left one's reach still claims the dash against it.
    assert _reach(marks, stops, left, 20) == (0, 0)
    # Alone, the left cell reaches it.
    stops[:, 60:90] = False
    assert _reach(marks, stops, left, 30) == (0, 17)


# Short crops (table cells, labels) are padded to their width plus a margin, not to 320 columns:
# they must still read exactly, and the recognizer must see the narrow batch.
SHORT_CELLS = ["单价", "¥25.00", "合计", "No. 7", "Qty", "发票", "2026-12-01", "OK"]


def test_short_crops_read_exactly_from_a_narrow_batch(predictor) -> None:
    widths: list[int] = []
    runner = predictor.runner

    def spy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        widths.append(x.shape[3])
        return runner(x)

    predictor.runner = spy
    try:
        got = [d.text for d in predictor.recognize([render_line(t, size=24) for t in SHORT_CELLS])]
    finally:
        predictor.runner = runner
    assert got == SHORT_CELLS
    # one batch per group of similar widths, each its widest crop + the margin, all under 320
    assert widths and max(widths) < TRAIN_WIDTH, widths
