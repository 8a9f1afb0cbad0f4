"""Tables: cells on one visual row are one line of the page text (tab-separated), while each cell
keeps its own entry in `lines` with its row and column."""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw

from ocr_core import Predictor
from ocr_core.evaluate import char_errors
from ocr_core.lines import _rules, find_lines

from .render import font, render_lines

# Column-major: render_lines fills the first column, then the next.
ITEM = ["Item", "Apple", "Pear", "Green tea"]
QTY = ["Qty", "30", "12", "15"]
PRICE = ["Price", "$1.20", "$0.80", "$25.00"]


def table_page():
    return render_lines(ITEM + QTY + PRICE, size=24, gap=0.4, columns=3, column_gap=110)


def test_the_line_finder_numbers_a_tables_cells() -> None:
    lines = find_lines(table_page())
    assert len(lines) == 12
    assert [ln.cell for ln in lines] == [(r, c) for r in range(4) for c in range(3)]
    # one visual row per table row, in reading order
    assert [ln.visual_row for ln in lines] == [r for r in range(4) for _ in range(3)]


def test_running_text_has_no_cells() -> None:
    lines = find_lines(render_lines(["The quick brown fox jumps", "over the lazy dog again", "and again"]))
    assert len(lines) == 3 and all(ln.cell is None for ln in lines)
    assert len({ln.visual_row for ln in lines}) == 3


def test_a_tables_rows_read_as_tab_separated_lines(predictor: Predictor) -> None:
    result = predictor.read(table_page())
    rows = result.text.split("\n")
    assert len(rows) == 4
    for r, row in enumerate(rows):
        cells = row.split("\t")
        assert len(cells) == 3, row
        for got, ref in zip(cells, (ITEM[r], QTY[r], PRICE[r])):
            assert char_errors(ref, got)[0] <= 1, (got, ref)
    assert len(result.lines) == 12
    d = result.to_dict()
    assert [(ln["row"], ln["column"]) for ln in d["lines"]] == [(r, c) for r in range(4) for c in range(3)]


def test_lines_outside_tables_carry_no_row_or_column(predictor: Predictor) -> None:
    d = predictor.read(render_lines(["Order 8812 shipped", "Amount Due: $56.70"])).to_dict()
    assert len(d["lines"]) == 2 and not any("row" in ln or "column" in ln for ln in d["lines"])
    assert "\t" not in predictor.read(render_lines(["Order 8812 shipped", "Amount Due: $56.70"])).text


def test_dashes_and_dots_inside_a_cell_keep_it_one_cell(predictor: Predictor) -> None:
    """Reference ranges of a lab report: the dashes of "0 -- 40" and the dots of "1.5" are too
    small to pass as glyphs, and the gap they fill is wider than the one words merge across; the
    cell must still be one box, read with them (without the rule: 15 boxes)."""
    name = ["Test", "ALT", "TBIL", "A/G"]
    ranges = ["Range", "0 -- 40", "3 -- 20", "1.5 -- 2.5"]
    unit = ["Unit", "U/L", "umol/L", "ratio"]
    page = render_lines(name + ranges + unit, size=24, gap=0.4, columns=3, column_gap=110)
    lines = find_lines(page)
    assert len(lines) == 12
    assert [ln.cell for ln in lines] == [(r, c) for r in range(4) for c in range(3)]
    rows = predictor.read(page).text.split("\n")
    for row, ref in zip(rows, ranges):
        got = row.split("\t")[1]
        # (the spaces around a dash are narrow: whether they are read is not what this checks)
        assert got.replace(" ", "") == ref.replace(" ", ""), (got, ref)


def ruled_table(rows: list[list[str]], *, size: int = 22, hpad: int = 10, vpad: int = 0) -> np.ndarray:
    """A table drawn with 1 px black rules, as forms and lab reports are; with `vpad` 0 the row's
    tallest glyphs touch the rules above and below, as in a low-resolution scan."""
    fonts = [[font(t, size) for t in row] for row in rows]
    inks = [[f.getbbox(t) for f, t in zip(fs, row)] for fs, row in zip(fonts, rows)]
    col_w = [max(int(fonts[r][c].getlength(rows[r][c])) for r in range(len(rows))) + 2 * hpad
             for c in range(len(rows[0]))]
    row_h = [max(b[3] - b[1] for b in ink) + 2 * vpad for ink in inks]
    width, height = sum(col_w) + len(col_w) + 41, sum(row_h) + len(row_h) + 41
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = 20
    for row, fs, ink, h in zip(rows, fonts, inks, row_h):
        draw.line([(20, y), (width - 21, y)], fill=(0, 0, 0))
        x = 21
        for t, f, b, w in zip(row, fs, ink, col_w):
            draw.text((x + hpad, y + 1 + vpad + (h - 2 * vpad - (b[3] - b[1])) // 2 - b[1]), t, font=f, fill=(0, 0, 0))
            x += w + 1
        y += h + 1
    draw.line([(20, y), (width - 21, y)], fill=(0, 0, 0))
    x = 20
    for w in [0, *col_w]:
        x += w + (1 if w else 0)
        draw.line([(x - (1 if w else 0), 20), (x - (1 if w else 0), y)], fill=(0, 0, 0))
    return np.asarray(img)


LAB = [["项目", "结果", "单位"], ["谷丙转氨酶", "25.6", "U/L"], ["间接胆红素", "7.9", "umol/L"],
       ["白蛋白", "35.1", "g/L"]]


def test_glyphs_touching_a_tables_rules_are_read(predictor: Predictor) -> None:
    """Glyphs that touch a rule were one component with the whole grid, which the glyph filter
    drops: the cell lost its touching characters (谷丙转氨酶 read as 谷丙转氨). Rules are taken
    out of the ink first (`lines._rules`)."""
    page = ruled_table(LAB)
    lines = find_lines(page)
    assert [ln.cell for ln in lines] == [(r, c) for r in range(4) for c in range(3)]
    rows = [row.split("\t") for row in predictor.read(page).text.split("\n")]
    assert rows == LAB


def test_a_ruled_grid_reads_row_by_row_although_its_columns_are_wide() -> None:
    """Every column of this table is wide enough to pass for a column of running text; the rules
    between its rows say it is a table (read column by column, its text said 项目 谷丙转氨酶 …
    then 结果 25.6 …)."""
    wide = [["检验项目名称", "检测结果数值", "参考范围说明"], ["谷丙转氨酶", "25.6 正常", "0 至 40 之间"],
            ["间接胆红素", "7.9 正常", "1.5 至 15 之间"], ["白蛋白", "35.1 正常", "33 至 55 之间"]]
    lines = find_lines(ruled_table(wide, hpad=20))
    assert [ln.cell for ln in lines] == [(r, c) for r in range(4) for c in range(3)]


def test_two_text_columns_in_a_frame_still_read_column_by_column() -> None:
    """A frame around the page and a rule between the columns are no grid: no rule crosses the
    gutter between the lines."""
    left = ["The quick brown fox", "jumps over the lazy", "dog and runs away", "into the green wood"]
    right = ["Pack my box with five", "dozen liquor jugs now", "and then go back home", "before it gets dark"]
    img = Image.fromarray(render_lines(left + right, size=22, gap=0.5, columns=2, column_gap=80))
    draw = ImageDraw.Draw(img)
    draw.rectangle([4, 4, img.width - 5, img.height - 5], outline=(0, 0, 0))
    mid = 22 + max(int(font(t, 22).getlength(t)) for t in left) + 40     # the gutter's middle
    draw.line([(mid, 10), (mid, img.height - 10)], fill=(0, 0, 0))
    lines = find_lines(np.asarray(img))
    assert len(lines) == 8 and all(ln.cell is None for ln in lines)
    assert [ln.box[0] < mid for ln in lines] == [True] * 4 + [False] * 4


def test_a_vertical_rule_parts_two_cells_whose_text_comes_close() -> None:
    """Text 7 px either side of a rule: closer than words are smeared and joined across, yet two
    cells (with neither the smear cut at the rule nor the join barred by it: one box)."""
    rows = [["Total amount", "Paid today"], ["Shipping cost", "Due tomorrow"], ["Tax rate", "Refund"]]
    lines = find_lines(ruled_table(rows, size=24, hpad=3, vpad=4))
    assert len(lines) == 6
    assert len({ln.box[0] // 20 for ln in lines}) >= 2


def test_a_headings_strokes_are_not_rules() -> None:
    """The strokes of 一 and 年 in a heading three times the body's size run straight for ~3 body
    glyph heights: shorter than a rule (RULE_LENGTH), and thick. (A heading over ~4.5 times the
    body in a thin face could lose strokes to the rule test; its box comes from the rest.)"""
    body = render_lines(["正文第一行文字", "正文第二行文字", "正文第三行文字"], size=22, gap=0.6)
    heading = render_lines(["统一年度报告"], size=66)
    rgb = np.full((body.shape[0] + heading.shape[0], max(body.shape[1], heading.shape[1]), 3), 255, np.uint8)
    rgb[: heading.shape[0], : heading.shape[1]] = heading
    rgb[heading.shape[0]:, : body.shape[1]] = body
    mask = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < 128).astype(np.uint8) * 255
    hrule, vrule = _rules(mask, 20.0)
    assert not hrule.any() and not vrule.any()
    # and a rule as long as the heading's strokes is found
    mask[-6:-4, 10:10 + 85] = 255
    assert _rules(mask, 20.0)[0][-6:-4].all(axis=0)[10:95].all()
    # the heading's glyphs are all inside the line finder's boxes
    ink = mask[: heading.shape[0] - 4] > 0
    covered = np.zeros_like(ink)
    for x, y, w, h in (ln.box for ln in find_lines(rgb)):
        covered[y:y + h, x:x + w] = True
    assert ink.sum() > 500 and (ink & ~covered).sum() == 0
