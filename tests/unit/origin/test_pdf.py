"""PDF uploads: rendered page by page (pypdfium2, OCR_PDF_DPI) and read by the worker."""
from __future__ import annotations

import io
from dataclasses import replace

from PIL import Image
from rapidfuzz.distance import Levenshtein

from origin import create_app, pdf

from .conftest import WEIGHTS
from .helpers import page, upload

PAGE_TEXTS = ["Invoice No. 2026-0042", "Total due: $1,234.56", "Thank you for your business"]


def make_pdf(texts: list[str], dpi: int = 200) -> bytes:
    """A PDF whose pages are rendered text lines (PIL writes one image per page)."""
    pages = [page(text, size=28, width=900).convert("RGB") for text in texts]
    buf = io.BytesIO()
    pages[0].save(buf, format="PDF", save_all=True, append_images=pages[1:], resolution=dpi)
    return buf.getvalue()


def test_three_page_pdf_one_result_three_pages_read(client, predictor, monkeypatch) -> None:
    data = make_pdf(PAGE_TEXTS)
    resp = upload(client, data, raw_type="application/pdf", json=True)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert [p["page"] for p in body["pages"]] == [1, 2, 3]
    assert predictor.calls == 3
    assert body["source"] == {"type": "pdf", "pages": 3, "dpi": 200}
    assert body["text"].count("\f") == 2
    assert body["width"] == body["pages"][0]["width"] == 900  # 200 dpi PDF rendered at 200 dpi
    if WEIGHTS.exists():  # the real recognizer reads each page's first line right
        for expected, p in zip(PAGE_TEXTS, body["pages"]):
            first = p["lines"][0]["text"]
            assert Levenshtein.normalized_distance(first, expected) <= 0.05, (first, expected)
    thumb = client.get(f"/results/{body['key']}/thumbnail.jpg")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.data)).width <= 320
    # the same bytes again (multipart this time): HIT, no recognition, not even opened (its key
    # comes from its bytes)
    opened: list[int] = []
    real_inspect = pdf.inspect
    monkeypatch.setattr(pdf, "inspect", lambda *a, **kw: opened.append(1) or real_inspect(*a, **kw))
    again = client.post("/ocr", data={"file": (io.BytesIO(data), "doc.pdf")}, content_type="multipart/form-data")
    assert again.status_code == 303 and again.headers["X-OCR-Cache"] == "HIT"
    assert again.headers["Location"] == f"/results/{body['key']}"
    assert predictor.calls == 3 and opened == []


def test_pdf_limits_and_corruption_are_4xx_json(settings, predictor) -> None:
    client = create_app(replace(settings, pdf_max_pages=2), predictor=predictor).test_client()
    too_many = upload(client, make_pdf(PAGE_TEXTS), raw_type="application/pdf")
    assert too_many.status_code == 413 and too_many.get_json()["error"]["code"] == "too_many_pages"
    broken = upload(client, b"%PDF-1.7\n" + b"\x00garbage" * 100, raw_type="application/pdf")
    assert broken.status_code == 400 and broken.get_json()["error"]["code"] == "corrupt_image"
    huge = create_app(replace(settings, pdf_dpi=600, max_pixels=1_000_000), predictor=predictor).test_client()
    big = upload(huge, make_pdf(PAGE_TEXTS[:1], dpi=72), raw_type="application/pdf")
    assert big.status_code == 413 and big.get_json()["error"]["code"] == "image_too_large"
    assert predictor.calls == 0


def test_pdf_key_differs_from_its_page_image_key(client, predictor) -> None:
    """The key comes from the PDF's bytes: never the key of an image upload of the same page."""
    img = page(PAGE_TEXTS[0], size=28, width=900).convert("RGB")
    pdf_resp = upload(client, make_pdf(PAGE_TEXTS[:1]), raw_type="application/pdf")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    png_resp = upload(client, buf.getvalue())
    assert pdf_resp.status_code == png_resp.status_code == 303
    assert pdf_resp.headers["Location"] != png_resp.headers["Location"]
