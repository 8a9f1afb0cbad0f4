"""Tables: cells on one visual row are one line of the page text (tab-separated), while each cell
keeps its own entry in `lines` with its row and column."""
from __future__ import annotations

import pytest

from ocr_core import Predictor
from ocr_core.evaluate import char_errors
from ocr_core.lines import find_lines

from .render import render_lines

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
