"""Word boxes: known words rendered at known places come back where they are, on documents
(classical finder), tilted photos (detector crops warped back) and single lines."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocr_core import Predictor
from ocr_core.detect import _order_corners, straighten_mapped
from ocr_core.words import apply, split_words, word_boxes

from .render import render_words, share_found

LINES = [
    "Invoice No. 2026-0042 Total: $1,234.56",
    "The quick brown fox jumps over the lazy dog",
    "发票号码 12345678 合计金额",
    "Page 1 of 1",
    "今天天气很好，我们去公园散步。",
]


def test_words_split_at_spaces_and_each_cjk_character() -> None:
    text = " Total: ¥25.00 单价Price，共3件"
    assert [text[a:b] for a, b in split_words(text)] == ["Total:", "¥25.00", "单", "价", "Price", "，", "共", "3", "件"]
    assert split_words("   ") == []


def test_word_boxes_on_a_document_page_overlap_the_true_boxes(predictor: Predictor) -> None:
    page, truth = render_words(LINES)
    result = predictor.read(page)
    assert result.finder == "classical"
    share, misses = share_found(result, truth)
    assert len(truth) >= 40
    assert share >= 0.95, misses
    d = result.to_dict()
    w = d["lines"][0]["words"][0]
    assert set(w) == {"text", "confidence", "box", "polygon"} and len(w["polygon"]) == 4
    assert 0 < w["confidence"] <= 1


def test_word_boxes_of_a_tilted_photo_map_back_through_the_straightened_crops(predictor: Predictor) -> None:
    label, truth = render_words(LINES[:3] + LINES[4:], size=26, margin=24)
    h, w = label.shape[:2]
    H, W = h * 3, w + 300
    rng = np.random.default_rng(3)
    cloth = cv2.GaussianBlur(rng.normal(0, 50, (H, W, 3)), (0, 0), 3) + rng.normal(0, 12, (H, W, 3))
    photo = (np.array([70, 95, 140]) + cloth).clip(0, 255).astype(np.uint8)
    y0, x0 = (H - h) // 2, (W - w) // 2
    photo[y0:y0 + h, x0:x0 + w] = label
    rot = cv2.getRotationMatrix2D((W / 2, H / 2), 5.0, 1.0)
    photo = cv2.warpAffine(photo, rot, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = [(t, (np.hstack([c + [x0, y0], np.ones((4, 1))]) @ rot.T)) for t, c in truth]
    result = predictor.read(photo)
    assert result.finder == "learned"
    share, misses = share_found(result, moved)
    assert share >= 0.95, misses
    # The polygons follow the tilt: the top edge of a word rises to the right by the page's angle.
    (tl, tr) = np.array(result.lines[1].words[2].polygon[:2], np.float64)
    assert np.degrees(np.arctan2(tl[1] - tr[1], tr[0] - tl[0])) == pytest.approx(5.0, abs=2.0)


def test_a_single_line_gets_word_boxes_in_its_own_coordinates(predictor: Predictor) -> None:
    page, truth = render_words(["Amount Due: $56.70"], margin=8)
    result = predictor.read(page, single_line=True)
    share, misses = share_found(result, truth)
    assert share == 1.0, misses


def test_straightened_crop_corners_map_back_to_the_quad() -> None:
    img = np.full((300, 400, 3), 255, np.uint8)
    for quad in ([[100, 80], [300, 100], [296, 140], [96, 120]],      # tilted, wide
                 [[180, 40], [220, 40], [220, 260], [180, 260]]):      # vertical: turned a quarter
        q = _order_corners(np.array(quad, np.float32))
        crop, to_image = straighten_mapped(img, q)
        ch, cw = crop.shape[:2]
        corners = apply(to_image, np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float64))
        # The crop is the quad grown by the padding on every side: its corners sit just outside.
        centre = q.mean(axis=0)
        for c, qc in zip(sorted(corners.tolist()), sorted(q.tolist())):
            assert np.linalg.norm(np.array(c) - qc) < 0.45 * np.linalg.norm(np.array(qc) - centre)
        assert apply(to_image, np.array([[cw / 2, ch / 2]]))[0] == pytest.approx(centre, abs=1.0)


def test_words_without_ink_fall_back_to_the_window() -> None:
    crop = np.full((30, 100, 3), 200, np.uint8)
    words = word_boxes("ab cd", (0.9, 0.8, 0.99, 0.7, 0.6), (2, 4, 6, 15, 17), 25, crop,
                       np.array([[1, 0, 10], [0, 1, 20], [0, 0, 1]], np.float64))
    assert [(w.text, w.confidence) for w in words] == [("ab", 0.8), ("cd", 0.6)]
    assert words[0].box[0] == 10 and words[1].box[0] + words[1].box[2] == 110
    assert words[0].box[0] + words[0].box[2] <= words[1].box[0]
