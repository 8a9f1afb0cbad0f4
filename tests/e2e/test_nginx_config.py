"""deploy/nginx behaviour on a real nginx, against a scripted stub origin (tests/e2e/stub_origin.py).

Each test pins one directive of the CDN layer: cache key, TTL sources, lock, stale serving,
redirects, 404s, request ids, gzip, body limit. The real origin is covered by test_flow.py.
"""
from __future__ import annotations

import gzip
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.servers import NginxServer, OriginServer, load_nginx_render, require_binary


def fresh(prefix: str) -> str:
    """A path segment no other test uses (the nginx cache lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def get(nginx: NginxServer, path: str, **kw) -> requests.Response:
    return requests.get(nginx.url + path, timeout=10, **kw)


def test_rendered_config_passes_nginx_t(tmp_path) -> None:
    render = load_nginx_render()
    conf = render.write_config(tmp_path / "nginx.conf", render.values_for(tmp_path, listen="127.0.0.1:1"))
    proc = subprocess.run([require_binary("nginx", "nginx-light"), "-t", "-p", str(tmp_path), "-c", str(conf),
                           "-e", str(tmp_path / "error.log")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = conf.read_text()
    assert not render.PLACEHOLDER.search(text)
    for directive in ("inactive=7d", "proxy_cache_key $uri", "proxy_cache_lock on",
                      "proxy_cache_background_update on", "X-Cache-Status $upstream_cache_status always"):
        assert directive in text or directive in (render.SNIPPETS / "results-cache.conf").read_text(), directive


def test_render_refuses_missing_placeholder() -> None:
    render = load_nginx_render()
    values = render.values_for("/tmp/x")
    del values["OCR_UPSTREAM"]
    try:
        render.render(values)
    except render.RenderError as exc:
        assert "OCR_UPSTREAM" in str(exc)
    else:
        raise AssertionError("render() accepted a template with an unfilled placeholder")


def test_miss_then_hit_and_query_string_does_not_bust(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('k')}"
    first = get(stub_nginx, path)
    second = get(stub_nginx, path)
    busted = get(stub_nginx, path + "?cb=1")
    assert first.status_code == second.status_code == busted.status_code == 200
    assert first.headers["X-Cache-Status"] == "MISS"
    assert second.headers["X-Cache-Status"] == "HIT"
    assert busted.headers["X-Cache-Status"] == "HIT"  # proxy_cache_key $uri
    assert first.json() == second.json() == busted.json()
    assert stub_origin.count_requests("GET", path) == 1
    # The origin's CDN headers pass through untouched for a commercial CDN in front.
    assert second.headers["Cache-Control"] == "public, max-age=604800, immutable"


def test_cache_lock_one_origin_fetch_for_ten_concurrent(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('slow')}"  # the stub takes 0.5 s, so all ten arrive while it works
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: get(stub_nginx, path), range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert len({r.content for r in responses}) == 1
    assert stub_origin.count_requests("GET", path) == 1
    statuses = sorted(r.headers["X-Cache-Status"] for r in responses)
    assert statuses.count("MISS") == 1, statuses


def test_redirect_is_never_cached(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('redirect')}"
    for _ in range(2):
        r = get(stub_nginx, path, allow_redirects=False)
        assert r.status_code == 302
        assert r.headers["X-Cache-Status"] == "MISS"
    assert stub_origin.count_requests("GET", path) == 2


def test_404_cached_briefly(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('missing')}"
    assert get(stub_nginx, path).headers["X-Cache-Status"] == "MISS"
    again = get(stub_nginx, path)
    assert again.status_code == 404 and again.headers["X-Cache-Status"] == "HIT"
    assert stub_origin.count_requests("GET", path) == 1
    # "Briefly": the fallback validity for 404 is at most a few minutes, never the 7 days of 200s.
    conf = (load_nginx_render().SNIPPETS / "results-cache.conf").read_text()
    assert "proxy_cache_valid 404 1m;" in conf


def test_post_is_never_cached(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    before = stub_origin.count_requests("POST", "/ocr")
    for _ in range(2):
        r = requests.post(stub_nginx.url + "/ocr", data=b"\x89PNG fake", allow_redirects=False,
                          headers={"Content-Type": "image/png"}, timeout=10)
        assert r.status_code == 303
        assert r.headers["Location"] == "/results/posted"
        assert "X-Cache-Status" not in r.headers or r.headers["X-Cache-Status"] == ""
    assert stub_origin.count_requests("POST", "/ocr") == before + 2
    entries = [e for e in stub_nginx.access_entries() if e["method"] == "POST"]
    assert entries and all(e["cache"] == "" for e in entries)


def test_stale_served_when_origin_down_after_expiry(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('short-ttl')}"  # the stub sends max-age=1
    first = get(stub_nginx, path)
    assert first.headers["X-Cache-Status"] == "MISS"
    time.sleep(1.6)  # entry expires
    stub_origin.stop()
    try:
        t0 = time.monotonic()
        stale = get(stub_nginx, path)
        elapsed = time.monotonic() - t0
        assert stale.status_code == 200
        assert stale.headers["X-Cache-Status"] == "STALE"
        assert stale.json() == first.json()
        assert elapsed < 1.0
        # Uncached key with the origin down: a fast, clean 502 (connection refused), no hang.
        t0 = time.monotonic()
        down = get(stub_nginx, f"/results/{fresh('k')}")
        assert down.status_code in (502, 504)
        assert down.json()["error"]["code"] in ("origin_unavailable", "origin_timeout")
        assert down.headers["Cache-Control"] == "no-store"
        assert time.monotonic() - t0 < 3.0
    finally:
        stub_origin.start()


def test_request_id_passed_through_and_generated(stub_nginx: NginxServer) -> None:
    mine = "req-" + uuid.uuid4().hex
    echoed = get(stub_nginx, "/echo-headers", headers={"X-Request-Id": mine})
    assert echoed.json()["x-request-id"] == mine
    assert echoed.headers["X-Request-Id"] == mine
    generated = get(stub_nginx, "/echo-headers")
    rid = generated.json()["x-request-id"]
    assert len(rid) == 32 and int(rid, 16) >= 0  # nginx's $request_id
    assert generated.headers["X-Request-Id"] == rid
    # A hostile value is replaced, not forwarded.
    evil = get(stub_nginx, "/echo-headers", headers={"X-Request-Id": 'x"; drop'})
    assert evil.json()["x-request-id"] != 'x"; drop'


def test_gzip_for_json_and_one_cache_entry_for_both_encodings(stub_nginx: NginxServer,
                                                             stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('big')}"
    plain = get(stub_nginx, path, headers={"Accept-Encoding": "identity"})
    raw = requests.get(stub_nginx.url + path, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
    body = raw.raw.read(decode_content=False)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert raw.headers["X-Cache-Status"] == "HIT"
    assert gzip.decompress(body) == plain.content
    assert "Content-Encoding" not in plain.headers
    assert stub_origin.count_requests("GET", path) == 1
    # The origin was asked without Accept-Encoding (the cache stores identity bodies).
    assert "accept-encoding" not in get(stub_nginx, "/echo-headers").json()


def test_body_over_limit_is_413(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    before = stub_origin.count_requests("POST", "/ocr")
    body = b"\0" * (stub_nginx.max_upload_bytes + 1)
    r = requests.post(stub_nginx.url + "/ocr", data=body, headers={"Content-Type": "image/png"}, timeout=10)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"  # same shape as the origin's errors
    assert r.headers["Cache-Control"] == "no-store"
    assert stub_origin.count_requests("POST", "/ocr") == before


def test_access_log_is_json_lines_with_cache_status(stub_nginx: NginxServer) -> None:
    path = f"/results/{fresh('k')}"
    get(stub_nginx, path)
    get(stub_nginx, path)
    time.sleep(0.1)
    entries = [e for e in stub_nginx.access_entries() if e["uri"] == path]
    assert [e["cache"] for e in entries] == ["MISS", "HIT"]
    for e in entries:
        assert set(e) >= {"time", "request", "uri", "status", "bytes", "request_time",
                          "upstream_response_time", "cache", "request_id"}
        assert e["status"] == 200 and e["bytes"] > 0
    assert entries[1]["upstream_response_time"] == ""  # a HIT never touched the origin
