"""The web app's server side: pages, content-hashed assets and their caching, JSON/`file` uploads,
errors in human units. The page's behaviour in a browser is tested in tests/e2e/test_browser.py."""
from __future__ import annotations

import base64
import hashlib
import io
import re

import pytest

from origin.web import ASSET_MAX_AGE, PAGE_MAX_AGE

from .helpers import png, upload

ASSET_RE = re.compile(r'(?:src|href)="(/static/([a-z]+)\.([0-9a-f]{10})\.(js|css|svg))"')


def _assets(html: str) -> list[tuple[str, str, str, str]]:
    return ASSET_RE.findall(html)


@pytest.mark.parametrize("path", ["/", "/view/" + "a" * 32, "/docs"])
def test_pages_are_short_lived_and_name_hashed_assets(client, path) -> None:
    resp = client.get(path)
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert resp.headers["Cache-Control"] == f"public, max-age={PAGE_MAX_AGE}"
    html = resp.get_data(as_text=True)
    found = _assets(html)
    assert {name for _, name, _, ext in found} >= {"app", "favicon"}
    for url, name, digest, ext in found:
        got = client.get(url)
        assert got.status_code == 200, url
        assert hashlib.sha256(got.data).hexdigest()[:10] == digest  # the URL names the content
        assert got.headers["Cache-Control"] == f"public, max-age={ASSET_MAX_AGE}, immutable"
    # A strict CSP (script-src/style-src 'self') must not break the page: nothing inline.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html), "external asset"


def test_unknown_or_stale_asset_hash_is_a_json_404(client) -> None:
    html = client.get("/").get_data(as_text=True)
    url = next(u for u, name, _, ext in _assets(html) if ext == "js")
    stale = re.sub(r"\.[0-9a-f]{10}\.", ".0000000000.", url)
    resp = client.get(stale)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    assert client.get("/static/app.js").status_code == 404  # unversioned names are not served


def test_favicon_redirects_to_the_versioned_icon(client) -> None:
    resp = client.get("/favicon.ico")
    assert resp.status_code == 301
    icon = client.get(resp.headers["Location"])
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data


def test_index_page_form_works_without_javascript(client) -> None:
    html = client.get("/").get_data(as_text=True)
    form = re.search(r'<form[^>]*action="/ocr"[^>]*method="post"[^>]*enctype="multipart/form-data"', html)
    assert form, "the page must keep a plain form that posts to /ocr"
    # the file input is labelled (axe: critical when not) and named as the upload field
    assert re.search(r'<label[^>]*for="file"', html) and re.search(r'<input id="file" name="image"', html)
    assert 'role="status"' in html and 'aria-live="polite"' in html
    assert "20 MiB" in html or "2 MiB" in html  # limits in human units, not "20971520"


def test_view_page_checks_the_key_shape(client) -> None:
    assert client.get("/view/" + "b" * 32).status_code == 200
    bad = client.get("/view/not-a-key")
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_key"


def test_docs_page_lists_every_operation(client) -> None:
    spec = client.get("/openapi.json").get_json()
    html = client.get("/docs").get_data(as_text=True)
    for path, ops in spec["paths"].items():
        for method in ops:
            assert f"{method.upper()} {path}" in html


# ---------------------------------------------------------------- uploads: JSON, `file`, units
def test_json_base64_upload_answers_like_multipart(client, predictor) -> None:
    data = png()
    first = client.post("/ocr", json={"image": base64.b64encode(data).decode()})
    assert first.status_code == 303 and first.headers["X-OCR-Cache"] == "MISS"
    assert first.headers["X-OCR-Match"] == "miss"
    again = upload(client, data)
    assert again.headers["Location"] == first.headers["Location"] and again.headers["X-OCR-Match"] == "exact"
    inline = client.post("/ocr?format=json",
                         json={"image": "data:image/png;base64," + base64.b64encode(data).decode()})
    assert inline.status_code == 200 and inline.get_json()["key"] == first.headers["Location"].rsplit("/", 1)[1]
    assert predictor.calls == 1


@pytest.mark.parametrize("body,code", [
    ({"image": "%%% not base64 %%%"}, "bad_request"),
    ({"image": ""}, "empty_upload"),
    ({"picture": "aGVsbG8="}, "empty_upload"),
    ({"image": 12}, "bad_request"),
    (["image"], "bad_request"),
])
def test_bad_json_uploads_are_400(client, predictor, body, code) -> None:
    resp = client.post("/ocr", json=body)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code
    assert predictor.calls == 0


def test_json_upload_of_not_an_image_is_415(client) -> None:
    resp = client.post("/ocr", json={"image": base64.b64encode(b"just text").decode()})
    assert resp.status_code == 415 and resp.get_json()["error"]["code"] == "unsupported_image"


def test_json_upload_over_the_limit_says_it_in_mib(client, settings) -> None:
    big = base64.b64encode(b"\x89PNG" + b"\0" * settings.max_upload_bytes).decode()
    resp = client.post("/ocr", json={"image": big})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["message"] == "uploads are limited to 2 MiB"


def test_multipart_field_may_be_named_file(client, predictor) -> None:
    resp = client.post("/ocr", data={"file": (io.BytesIO(png()), "a.png")}, content_type="multipart/form-data")
    assert resp.status_code == 303
    assert upload(client, png()).headers["Location"] == resp.headers["Location"]


def test_limits_are_said_in_human_units(client, settings) -> None:
    raw = upload(client, b"\x89PNG" + b"\0" * (settings.max_upload_bytes + 1), raw_type="image/png")
    assert raw.status_code == 413 and raw.get_json()["error"]["message"] == "uploads are limited to 2 MiB"
    from .test_images import _png_header_only
    huge = upload(client, _png_header_only(3000, 2000))  # 6 MP against the tests' 4 MP
    msg = huge.get_json()["error"]["message"]
    assert huge.status_code == 413 and "6 megapixels" in msg and "limit is 4 megapixels" in msg
    assert not re.search(r"\d{5,}", msg)
