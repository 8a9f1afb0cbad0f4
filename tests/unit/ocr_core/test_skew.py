"""Deskew: a document tilted by up to 10 degrees reads as upright, with boxes in the coordinates of
the image as uploaded."""
from __future__ import annotations

import numpy as np
import pytest

from ocr_core import Predictor
from ocr_core.evaluate import char_errors
from ocr_core.skew import deskew, estimate_skew, tilt
from ocr_core.words import apply

from .render import render_lines, render_words, share_found

PAGE = [
    "Invoice No. 2026-0042 Total: $1,234.56",
    "收货地址：上海市浦东新区张江路88号",
    "The quick brown fox jumps over the lazy dog",
    "合计金额 ¥7,200.00 含税",
    "Payment due within 30 days of receipt",
]


@pytest.mark.parametrize("angle", [-9.5, -4.0, 2.5, 7.0])
def test_the_tilt_of_a_page_is_measured(angle: float) -> None:
    page = render_lines(PAGE, size=24)
    assert estimate_skew(page) == 0.0
    assert abs(estimate_skew(tilt(page, angle)) - angle) <= 0.4


def test_no_tilt_is_claimed_without_lines() -> None:
    assert estimate_skew(np.full((300, 400, 3), 255, np.uint8)) == 0.0
    noise = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert estimate_skew(noise) == 0.0


def test_deskew_returns_the_map_back_to_the_page() -> None:
    page = render_lines(PAGE, size=24)
    out, to_page = deskew(page, 5.0)
    assert out.shape[0] > page.shape[0] and out.shape[1] > page.shape[1]   # nothing cut off
    # every pixel of the new image inside the page came from where the map says
    ys, xs = np.mgrid[0:out.shape[0]:3, 0:out.shape[1]:3]
    src = np.round(apply(to_page, np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64))).astype(int)
    inside = (src[:, 0] >= 1) & (src[:, 1] >= 1) & (src[:, 0] < page.shape[1] - 1) & (src[:, 1] < page.shape[0] - 1)
    got = out[ys.ravel()[inside], xs.ravel()[inside]].astype(int)
    want = page[src[inside, 1], src[inside, 0]].astype(int)
    assert inside.sum() > 1000
    assert np.median(np.abs(got - want)) == 0 and np.mean(np.abs(got - want)) < 12


@pytest.mark.parametrize("angle", [-6.0, 4.0])
def test_a_tilted_document_reads_as_upright_with_boxes_on_the_upload(predictor: Predictor, angle: float) -> None:
    upright, truth = render_words(PAGE)
    uploaded = tilt(upright, angle)
    result = predictor.read(uploaded, finder="classical")
    assert abs(result.skew - angle) <= 0.4
    assert result.to_dict()["skew"] == result.skew and result.rotation == 0
    assert len(result.lines) == len(PAGE), [ln.text for ln in result.lines]
    for ln, ref in zip(result.lines, PAGE):
        assert char_errors(ref, ln.text)[0] <= 1, (ln.text, ref)
    # The true word boxes of the upright page, tilted with it: tilt() is deskew() by minus the angle.
    to_uploaded = np.linalg.inv(deskew(upright, -angle)[1])
    share, misses = share_found(result, [(t, apply(to_uploaded, c)) for t, c in truth])
    assert share >= 0.95, misses
    h, w = uploaded.shape[:2]
    for ln in result.lines:
        x, y, bw, bh = ln.box
        assert 0 <= x and 0 <= y and x + bw <= w + 1 and y + bh <= h + 1
        xs, ys = zip(*ln.polygon)
        assert (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)) == ln.box


def test_an_upright_page_is_not_turned(predictor: Predictor) -> None:
    result = predictor.read(render_lines(PAGE, size=26), finder="classical")
    assert result.skew == 0.0
    assert [ln.text for ln in result.lines] == [ln.text for ln in predictor.read(render_lines(PAGE, size=26)).lines]


TICKET = ["宜春站", "G1418", "二等座 05车07A号", "南昌西站", "¥81.0元", "限乘当日当次车"]


@pytest.mark.parametrize("angle", [0.0, 6.0, -6.0])
def test_a_tilted_photo_reads_row_by_row(predictor: Predictor, angle: float) -> None:
    # Two columns of short items with tight rows, as on a ticket: tilted by a few degrees, each
    # line's upright box overlaps the next row's, and rows used to interleave.
    page = render_lines(TICKET, size=26, columns=2, column_gap=60, gap=0.35)
    result = predictor.read(tilt(page, angle) if angle else page, finder="learned")
    assert result.skew == 0.0                   # the detector's route turns no pixels ...
    texts = [ln.text for ln in result.lines]
    # ... and reads left to right, row by row (render_lines fills the first column first)
    expected = [TICKET[0], TICKET[3], TICKET[1], TICKET[4], TICKET[2], TICKET[5]]
    assert len(texts) == len(expected), texts
    for got, want in zip(texts, expected):
        assert char_errors(want, got)[0] <= 1, (texts, expected)
