"""The OpenAPI contract through nginx: answers that pass the cache layer, and the errors nginx
produces itself (413 before the origin sees the body), validate against /openapi.json."""
from __future__ import annotations

import base64
from typing import Any

import requests

from tests.contract import Contract
from tests.e2e.conftest import MAX_UPLOAD_BYTES
from tests.e2e.test_browser import INVOICE, render
from tests.servers import NginxServer


def _check(contract: Contract, method: str, base: str, path: str, **kw: Any) -> requests.Response:
    resp = requests.request(method, base + path, allow_redirects=False, timeout=120, **kw)
    contract.check(method, path, resp.status_code, resp.headers.get("Content-Type"),
                   dict(resp.headers), resp.json)
    return resp


def test_answers_through_nginx_match_the_contract(nginx: NginxServer) -> None:
    spec = requests.get(nginx.url + "/openapi.json", timeout=30).json()
    contract = Contract(spec)
    png = render(INVOICE)
    first = _check(contract, "POST", nginx.url, "/ocr", files={"file": ("a.png", png, "image/png")})
    assert first.status_code == 303
    key = first.headers["Location"].rsplit("/", 1)[1]
    inline = _check(contract, "POST", nginx.url, "/ocr?format=json",
                    json={"image": base64.b64encode(png).decode()})
    assert inline.status_code == 200 and inline.json()["key"] == key
    for _ in range(2):  # a MISS then a HIT of the cache: same contract
        assert _check(contract, "GET", nginx.url, f"/results/{key}").status_code == 200
    assert _check(contract, "GET", nginx.url, f"/view/{key}").status_code == 200
    assert _check(contract, "GET", nginx.url, "/results/" + "a" * 32).status_code == 404
    assert _check(contract, "GET", nginx.url, "/view/nope").status_code == 400
    # nginx's own 413 (the body is over client_max_body_size): the same error shape
    too_big = _check(contract, "POST", nginx.url, "/ocr", data=b"\0" * (MAX_UPLOAD_BYTES + 70_000),
                     headers={"Content-Type": "image/png"})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    assert too_big.json()["error"]["message"] == "uploads are limited to 2 MiB"  # words, not bytes
    assert {(m, p, s) for m, p, s in contract.seen} >= {
        ("POST", "/ocr", "303"), ("POST", "/ocr", "200"), ("POST", "/ocr", "413"),
        ("GET", "/results/{key}", "200"), ("GET", "/results/{key}", "404"), ("GET", "/view/{key}", "200")}
