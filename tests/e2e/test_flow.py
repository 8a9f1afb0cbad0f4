"""The whole product through real parts: nginx → gunicorn origin.wsgi:app → Redis + S3 (moto).

What the issues promise a user and an operator, checked from the outside:
upload → 303 → result MISS then HIT through nginx, thumbnail, dedup HIT on a second upload,
reading the invoice line, results still served with the origin down, one origin fetch for ten
concurrent cold requests, uploads never cached, the body limit, request ids in the origin's logs.
"""
from __future__ import annotations

import io
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from tests.e2e.conftest import MAX_UPLOAD_BYTES
from tests.servers import NginxServer, OriginServer

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
INVOICE = "Invoice No. 2026-0042 Total: $1,234.56"


def render_line(text: str, size: int = 32) -> bytes:
    """Black text on white in DejaVu Sans, as a PNG (synthesised here, never downloaded)."""
    if not FONT.exists():
        pytest.fail(f"{FONT} missing: apt-get install -y fonts-dejavu-core (or run `make test`)")
    font = ImageFont.truetype(str(FONT), size)
    left, top, right, bottom = font.getbbox(text)
    pad = size // 2
    img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), "white")
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def upload(base_url: str, png: bytes) -> requests.Response:
    return requests.post(f"{base_url}/ocr", files={"image": ("upload.png", png, "image/png")},
                         allow_redirects=False, timeout=120)


def metric_total(origin: OriginServer, name: str) -> float:
    """Sum of a Prometheus sample over all label sets, read from the origin's /metrics."""
    text = requests.get(origin.url + "/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def other_key(key: str, nth: int = 0) -> str:
    """A key of the same shape that no upload produced: the last character replaced by the
    `nth` other letter of the alphabet (different `nth`, different keys)."""
    others = [c for c in "abcdefghijklmnopqrstuvwxyz234567" if c != key[-1]]
    return key[:-1] + others[nth]


@pytest.fixture(scope="module")
def invoice(nginx: NginxServer) -> dict:
    """Upload the invoice line once through nginx; later tests reuse its key."""
    t0 = time.perf_counter()
    r = upload(nginx.url, render_line(INVOICE))
    elapsed = time.perf_counter() - t0
    assert r.status_code == 303, r.text
    return {"location": r.headers["Location"], "response": r, "elapsed": elapsed}


def test_upload_redirects_then_miss_then_hit(nginx: NginxServer, origin: OriginServer, invoice: dict) -> None:
    r = invoice["response"]
    location = invoice["location"]
    assert re.fullmatch(r"/results/[A-Za-z0-9_-]+", location), location
    assert r.headers["X-OCR-Cache"] == "MISS"
    assert "no-store" in r.headers["Cache-Control"]

    first = requests.get(nginx.url + location, timeout=10)
    second = requests.get(nginx.url + location, timeout=10)
    assert first.status_code == second.status_code == 200
    assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("MISS", "HIT")
    assert first.json() == second.json()
    assert second.headers["Content-Type"] == "application/json; charset=utf-8"
    assert second.headers["Cache-Control"] == "public, max-age=604800, immutable"
    assert second.headers.get("ETag")
    assert origin.settled_count("GET", location, 1) == 1

    body = second.json()
    for field in ("key", "text", "lines", "phash", "sha256", "width", "height", "model", "elapsed_ms", "created_at"):
        assert field in body, field
    assert location.endswith(body["key"])
    assert set(body["model"]) >= {"name", "version"}
    for line in body["lines"]:
        assert set(line) >= {"text", "confidence", "box"} and len(line["box"]) == 4


def test_etag_revalidation_is_answered_from_the_cache(nginx: NginxServer, origin: OriginServer,
                                                     invoice: dict) -> None:
    """A CDN revalidating a cached result gets a 304 from nginx, without reaching the origin."""
    url = nginx.url + invoice["location"]
    identity = {"Accept-Encoding": "identity"}  # gzipped answers carry the weak form W/"..."
    etag = requests.get(url, headers=identity, timeout=10).headers["ETag"]
    before = origin.count_requests("GET", invoice["location"])
    r = requests.get(url, headers={**identity, "If-None-Match": etag}, timeout=10)
    assert r.status_code == 304 and not r.content
    assert r.headers["ETag"] == etag and r.headers["X-Cache-Status"] == "HIT"
    assert origin.settled_count("GET", invoice["location"], before) == before


def test_malformed_key_is_400_json_with_a_short_max_age(nginx: NginxServer) -> None:
    r = requests.get(nginx.url + "/results/NOT-A-KEY", timeout=10)
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == "invalid_key"
    assert r.headers["Cache-Control"] == "public, max-age=60"  # never the results' week
    assert r.headers["X-Cache-Status"] in ("MISS", "HIT")


def test_reads_the_invoice_line(nginx: NginxServer, invoice: dict) -> None:
    text = requests.get(nginx.url + invoice["location"], timeout=10).json()["text"]
    assert Levenshtein.distance(text.strip(), INVOICE) <= 2, text


def test_thumbnail_is_cached_too(nginx: NginxServer, invoice: dict) -> None:
    url = nginx.url + invoice["location"] + "/thumbnail.jpg"
    first = requests.get(url, timeout=10)
    second = requests.get(url, timeout=10)
    assert first.status_code == second.status_code == 200
    assert first.headers["Content-Type"] == "image/jpeg"
    assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("MISS", "HIT")
    assert second.headers["Cache-Control"] == "public, max-age=604800, immutable"
    assert second.headers.get("ETag")
    with Image.open(io.BytesIO(second.content)) as img:
        assert img.format == "JPEG" and img.width > 0


def test_same_upload_twice_is_a_dedup_hit_without_inference(nginx: NginxServer, origin: OriginServer,
                                                            invoice: dict) -> None:
    inferences = metric_total(origin, "ocr_inference_seconds_count")
    again = upload(nginx.url, render_line(INVOICE))
    assert again.status_code == 303
    assert again.headers["X-OCR-Cache"] == "HIT"
    assert again.headers["Location"] == invoice["location"]
    assert metric_total(origin, "ocr_inference_seconds_count") == inferences


def test_post_is_never_cached(nginx: NginxServer, origin: OriginServer, invoice: dict) -> None:
    time.sleep(0.3)  # gunicorn writes its access line after the response: let earlier ones land
    before = origin.count_requests("POST", "/ocr")
    png = render_line(INVOICE)
    for _ in range(2):
        r = upload(nginx.url, png)
        assert r.status_code == 303
        assert r.headers.get("X-Cache-Status", "") == ""
    assert origin.settled_count("POST", "/ocr", before + 2) == before + 2  # and no third one
    posts = [e for e in nginx.access_entries() if e["method"] == "POST"]
    assert posts and {e["cache"] for e in posts} == {""}


def test_ten_concurrent_cold_requests_reach_the_origin_once(nginx: NginxServer, origin: OriginServer) -> None:
    # Upload straight to the origin: the result exists, but nginx has never seen its URL.
    r = upload(origin.url, render_line(f"Order {uuid.uuid4().int % 10**6:06d} shipped"))
    assert r.status_code == 303
    location = r.headers["Location"]
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: requests.get(nginx.url + location, timeout=15), range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert len({a.content for a in answers}) == 1
    assert origin.settled_count("GET", location, 1) == 1
    assert sorted(a.headers["X-Cache-Status"] for a in answers).count("MISS") == 1


def test_unknown_key_is_404_json_cached_briefly(nginx: NginxServer, invoice: dict) -> None:
    missing = "/results/" + other_key(invoice["location"].rsplit("/", 1)[1])
    first = requests.get(nginx.url + missing, timeout=10)
    assert first.status_code == 404
    assert first.headers["Content-Type"].startswith("application/json")
    m = re.search(r"max-age=(\d+)", first.headers.get("Cache-Control", ""))
    assert m and int(m.group(1)) <= 300, first.headers.get("Cache-Control")
    assert requests.get(nginx.url + missing, timeout=10).headers["X-Cache-Status"] == "HIT"


def test_upload_over_the_body_limit_is_413(nginx: NginxServer, origin: OriginServer) -> None:
    before = origin.count_requests("POST", "/ocr")
    r = requests.post(nginx.url + "/ocr", data=b"\0" * (MAX_UPLOAD_BYTES + 1),
                      headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 413
    assert origin.count_requests("POST", "/ocr") == before


def test_request_id_reaches_the_origin(nginx: NginxServer, origin: OriginServer) -> None:
    rid = "e2e-" + uuid.uuid4().hex
    r = requests.get(nginx.url + "/healthz", headers={"X-Request-Id": rid}, timeout=10)
    assert r.status_code == 200 and r.headers["X-Request-Id"] == rid
    time.sleep(0.2)
    assert any(f"rid={rid}" in line for line in origin.access_lines())
    logged = [e for e in nginx.access_entries() if e["request_id"] == rid]
    assert logged and logged[0]["uri"] == "/healthz"


def test_one_request_id_in_nginx_gunicorn_and_origin_logs(nginx: NginxServer, origin: OriginServer) -> None:
    """An upload without an id of its own: nginx makes one, and every log line about it has it."""
    r = upload(nginx.url, render_line(f"Ticket {uuid.uuid4().int % 10**6:06d} closed"))
    assert r.status_code == 303
    rid = r.headers["X-Request-Id"]
    key = r.headers["Location"].rsplit("/", 1)[1]
    time.sleep(0.2)
    [entry] = [e for e in nginx.access_entries() if e["request_id"] == rid]
    assert entry["method"] == "POST" and entry["uri"] == "/ocr" and entry["status"] == 303
    assert any(f"rid={rid}" in line and '"POST /ocr ' in line for line in origin.access_lines())
    # The origin's structured log (origin/logs.py format): `... request_id=<id> <message>`.
    mine = [line for line in origin.app_log_lines() if f"request_id={rid} " in line]
    assert any("upload done" in line and f"key={key}" in line for line in mine), mine


def test_origin_down_cached_result_still_served_uncached_fails_fast(nginx: NginxServer, origin: OriginServer,
                                                                    invoice: dict) -> None:
    location = invoice["location"]
    assert requests.get(nginx.url + location, timeout=10).status_code == 200  # cached by now
    uncached = "/results/" + other_key(location.rsplit("/", 1)[1], nth=1)
    origin.stop()
    try:
        served = requests.get(nginx.url + location, timeout=10)
        assert served.status_code == 200
        assert served.headers["X-Cache-Status"] in ("HIT", "STALE")
        assert served.json()["text"]
        t0 = time.monotonic()
        failed = requests.get(nginx.url + uncached, timeout=10)
        assert failed.status_code in (502, 504)
        assert failed.json()["error"]["code"] in ("origin_unavailable", "origin_timeout")
        assert time.monotonic() - t0 < 5.0  # not a hang: refused is instant, connect timeout 2 s
    finally:
        origin.start()
