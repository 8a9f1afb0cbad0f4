"""The API contract: /openapi.json is a valid OpenAPI 3.1 document, every route is in it, and every
response of every operation (successes and errors) matches what it documents: the status, the
content type, the JSON body's schema and the documented header values.

An equivalent of schemathesis' response checks, written here so that each operation is driven
with inputs that reach its real answers (a recognised image, a reuse, each error) rather than
random bytes that would mostly exercise the 4xx paths. tests/e2e/test_browser.py runs the same
check through nginx (its own 413 included)."""
from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from PIL import Image

from tests.contract import Contract

from .helpers import png

@pytest.fixture
def contract(client) -> Contract:
    return Contract(client.get("/openapi.json").get_json())


def test_document_is_valid_openapi_31(client) -> None:
    spec = client.get("/openapi.json").get_json()
    validate_spec(spec)  # raises with the offending pointer
    assert spec["openapi"].startswith("3.1")
    for name, schema in spec["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)


def test_every_route_is_documented(app, contract) -> None:
    documented = contract.operations()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (method, path) in documented, f"{method} {path} is a route but not in /openapi.json"


def _call(client, contract: Contract, method: str, path: str, **kw: Any):
    resp = client.open(path, method=method, **kw)
    contract.check(method, path, resp.status_code, resp.headers.get("Content-Type"),
                   dict(resp.headers), lambda: resp.get_json(force=True))
    return resp


def test_every_operation_answers_as_documented(app, client, contract, settings) -> None:
    from .test_images import _png_header_only

    data = png()
    mp = lambda field="image": {"data": {field: (io.BytesIO(data), "a.png")},  # noqa: E731
                                "content_type": "multipart/form-data"}
    first = _call(client, contract, "POST", "/ocr", **mp())
    key = first.headers["Location"].rsplit("/", 1)[1]
    _call(client, contract, "POST", "/ocr?format=json", **mp("file"))
    _call(client, contract, "POST", "/ocr?format=json", json={"image": base64.b64encode(data).decode()})
    _call(client, contract, "POST", "/ocr", data=data, content_type="image/png")
    other = png(Image.new("RGB", (64, 40), "white"))
    _call(client, contract, "POST", "/ocr?format=json", data=other, content_type="image/png")  # 201
    for bad in ({"data": b"", "content_type": "image/png"},
                {"data": b"not an image", "content_type": "image/png"},
                {"data": data[:100], "content_type": "image/png"},
                {"json": {"image": "%%%"}},
                {"data": b"x", "content_type": "text/plain"},
                {"data": _png_header_only(10_000, 10_000), "content_type": "image/png"},
                {"data": b"\0" * (settings.max_upload_bytes + 1), "content_type": "image/png"}):
        assert _call(client, contract, "POST", "/ocr", **bad).status_code >= 400

    result = _call(client, contract, "GET", f"/results/{key}")
    _call(client, contract, "GET", f"/results/{key}", headers={"If-None-Match": result.headers["ETag"]})
    _call(client, contract, "GET", f"/results/{key}/thumbnail.jpg")
    for path in (f"/results/{'a' * 32}", "/results/bad", f"/results/{'a' * 32}/thumbnail.jpg",
                 "/results/bad/thumbnail.jpg", "/view/bad"):
        assert _call(client, contract, "GET", path).status_code in (400, 404)
    for path in ("/", f"/view/{key}", "/docs", "/openapi.json", "/healthz", "/readyz", "/metrics"):
        assert _call(client, contract, "GET", path).status_code == 200
    # the queue: 202 and the job, batches
    queued = _call(client, contract, "POST", "/ocr", data=png(Image.new("RGB", (80, 40), "white")),
                   content_type="image/png", headers={"Prefer": "respond-async"})
    assert queued.status_code == 202
    assert _call(client, contract, "GET", queued.headers["Location"]).status_code == 303
    for path in ("/jobs/bad", f"/jobs/{'a' * 32}", "/batches/bad", f"/batches/{'a' * 22}"):
        assert _call(client, contract, "GET", path).status_code in (400, 404)
    batch = _call(client, contract, "POST", "/ocr/batch", **mp())
    assert batch.status_code == 202
    assert _call(client, contract, "GET", batch.headers["Location"]).status_code == 200
    icon = _call(client, contract, "GET", "/favicon.ico").headers["Location"]
    assert _call(client, contract, "GET", icon).status_code == 200
    assert _call(client, contract, "GET", "/static/app.0000000000.js").status_code == 404

    rules = {rule.rule for rule in app.url_map.iter_rules()}
    if "/jobs/<key>" in rules:  # with the job queue: a stored result's job redirects to it
        assert _call(client, contract, "GET", f"/jobs/{key}").status_code == 303
        assert _call(client, contract, "GET", "/jobs/bad").status_code == 400
    if "/ocr/batch" in rules:
        batch = _call(client, contract, "POST", "/ocr/batch", content_type="multipart/form-data",
                      data={"image": [(io.BytesIO(data), "a.png"), (io.BytesIO(other), "b.png")]})
        if batch.status_code == 202:
            assert _call(client, contract, "GET", batch.headers["Location"]).status_code == 200
        assert _call(client, contract, "GET", "/batches/bad!").status_code in (400, 404)

    # every operation of this app was driven at least once, and every status of /ocr and /results
    seen_ops = {(m, p) for m, p, _ in contract.seen}
    untested = {op for op in contract.operations() - seen_ops if op[1] != "/nginx-health"}
    assert not untested, f"operations never exercised: {sorted(untested)}"
    statuses = {s for m, p, s in contract.seen if p == "/ocr"}
    assert statuses >= {"200", "201", "303", "400", "413", "415"}


def test_contract_check_catches_a_wrong_body(contract) -> None:
    """The checker itself fails on a response that breaks the schema (no vacuous pass)."""
    with pytest.raises(AssertionError, match="lines"):
        contract.check("GET", "/results/" + "a" * 32, 200, "application/json", {},
                       lambda: {"key": "a" * 32, "text": "", "lines": [{"text": 1}], "width": 1, "height": 1,
                                "model": {"name": "m", "version": "1"}, "elapsed_ms": 1,
                                "created_at": "2026-01-01T00:00:00Z"})
    with pytest.raises(AssertionError, match="not documented"):
        contract.check("GET", "/healthz", 418, "application/json", {}, lambda: {})
    with pytest.raises(AssertionError, match="X-OCR-Cache"):
        contract.check("POST", "/ocr", 303, "application/json", {"X-OCR-Cache": "MAYBE"},
                       lambda: {"key": "a" * 32, "location": "/results/" + "a" * 32})
