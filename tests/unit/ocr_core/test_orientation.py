"""Pages at any orientation: turned by 90, 180 or 270 degrees they read as upright, with boxes in
the coordinates of the image as uploaded."""
from __future__ import annotations

import numpy as np
import pytest

from ocr_core import Predictor
from ocr_core.evaluate import char_errors
from ocr_core.orientation import lines_run_down, to_upload, turn
from ocr_core.words import apply

from .render import render_lines, render_words, share_found

PAGE = [
    "Invoice No. 2026-0042 Total: $1,234.56",
    "收货地址：上海市浦东新区",
    "The quick brown fox jumps over the lazy dog",
    "合计金额 ¥7,200.00",
]


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_turn_and_its_inverse_map_every_pixel_back(rotation: int) -> None:
    img = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    turned = turn(img, rotation)
    back = to_upload(rotation, 7, 5)
    ys, xs = np.mgrid[0:turned.shape[0], 0:turned.shape[1]]
    # pixel centres map to pixel centres
    pts = apply(back, np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)) - 0.5
    src = np.round(pts).astype(int)
    assert (img[src[:, 1], src[:, 0]] == turned.reshape(-1, 3)).all()


@pytest.mark.parametrize("lines", [PAGE, ["今天天气很好，我们去公园散步。", "发票号码：12345678", "收货地址：上海市浦东新区"]])
def test_lines_running_down_the_image_are_seen(lines: list[str]) -> None:
    page = render_lines(lines, size=24)
    assert not lines_run_down(page)
    assert not lines_run_down(turn(page, 180))
    assert lines_run_down(turn(page, 90)) and lines_run_down(turn(page, 270))


def test_a_table_like_form_stays_upright() -> None:
    page = render_lines(["Name", "Qty", "Price", "Apple", "3", "1.20", "Pear", "12", "0.80"], size=22,
                        columns=3, column_gap=80)
    assert not lines_run_down(page)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_turned_page_reads_as_upright_with_boxes_on_the_upload(predictor: Predictor, rotation: int) -> None:
    upright, truth = render_words(PAGE)
    expected = predictor.read(upright)
    assert expected.rotation == 0
    uploaded = turn(upright, rotation)
    h, w = uploaded.shape[:2]
    result = predictor.read(uploaded)
    # the clockwise turn that makes the upload upright undoes the one applied here
    assert result.rotation == (360 - rotation) % 360
    assert result.to_dict()["rotation"] == result.rotation
    assert len(result.lines) == len(PAGE)
    for ln, ref in zip(result.lines, PAGE):
        assert char_errors(ref, ln.text)[0] <= 1, (ln.text, ref)
    # Boxes in the upload's coordinates: the upright page's true word boxes, turned with it.
    to_uploaded = np.linalg.inv(to_upload(rotation, upright.shape[1], upright.shape[0]))
    moved = [(t, apply(to_uploaded, c)) for t, c in truth]
    share, misses = share_found(result, moved)
    assert share >= 0.95, misses
    for ln in result.lines:
        x, y, bw, bh = ln.box
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
        # the line box is the bounds of its polygon, whose first corner is the text's top-left
        xs, ys = zip(*ln.polygon)
        assert (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)) == ln.box
    assert result.lines[0].polygon[0] == _nearest_corner(result.lines[0].words[0].polygon[0], result.lines[0].polygon)


def _nearest_corner(p: tuple[int, int], polygon: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    return min(polygon, key=lambda c: (c[0] - p[0]) ** 2 + (c[1] - p[1]) ** 2)


def test_orientation_can_be_switched_off(predictor: Predictor) -> None:
    page = turn(render_lines(PAGE), 180)
    assert predictor.read(page, orient=False).rotation == 0
    assert predictor.read(page).rotation == 180


def test_exif_orientation_is_applied_first(predictor: Predictor) -> None:
    import io

    from PIL import Image

    from ocr_core.images import load_image

    upright = render_lines(PAGE)
    stored = Image.fromarray(turn(upright, 270))         # pixels stored turned a quarter back ...
    exif = Image.Exif()
    exif[0x0112] = 6                                     # ... and tagged "turn 90° clockwise to view"
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif)
    image = load_image(buf.getvalue())
    assert image.size == (upright.shape[1], upright.shape[0])
    result = predictor.read(image)
    # decoded upright already: nothing left to turn, and boxes are in the decoded image's coordinates
    assert result.rotation == 0 and len(result.lines) == len(PAGE)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_turned_photo_reads_in_order(predictor: Predictor, rotation: int) -> None:
    from .test_detect import photo_of_label

    texts = ["洗涤说明 100%桑蚕丝", "Total: $1,234.56", "原版正品 今日活动价"]
    result = predictor.read(turn(photo_of_label(texts), rotation))
    assert result.finder == "learned"
    assert result.rotation == (360 - rotation) % 360
    assert len(result.lines) == len(texts)
    for ln, ref in zip(result.lines, texts):
        assert char_errors(ref, ln.text)[0] <= 2, (ln.text, ref)


def test_a_line_upside_down_on_an_upright_page_is_read_turned(predictor: Predictor) -> None:
    texts = ["Invoice No. 2026-0042", "收货地址：上海市浦东新区", "Amount Due: $56.70"]
    page = render_lines(texts, size=26).copy()
    # the middle line's band turned by 180 degrees in place (a label stuck on upside down)
    ys = np.flatnonzero((page.min(axis=2) < 128).any(axis=1))
    bands = np.split(ys, np.flatnonzero(np.diff(ys) > 1) + 1)
    y0, y1 = bands[1][0] - 6, bands[1][-1] + 7
    page[y0:y1] = page[y0:y1][::-1, ::-1]
    result = predictor.read(page)
    assert result.rotation == 0
    assert len(result.lines) == 3
    for ln, ref in zip(result.lines, texts):
        assert char_errors(ref, ln.text)[0] <= 1, (ln.text, ref)
    turned = result.lines[1]
    # the text's top-left corner comes first: for an upside-down line it is the box's bottom-right
    x, y, w, h = turned.box
    assert turned.polygon[0] == (x + w, y + h)
    # its words run right to left across the image
    assert turned.words[0].box[0] > turned.words[-1].box[0]
    assert predictor.read(page, orient=False).lines[1].text != result.lines[1].text
