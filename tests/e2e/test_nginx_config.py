"""deploy/nginx behaviour on a real nginx, against a scripted stub origin (tests/e2e/stub_origin.py).

Each test pins one directive of the CDN layer: cache key, TTL sources, lock, stale serving,
redirects, 404s, request ids, gzip, body limit. The real origin is covered by test_flow.py.
"""
from __future__ import annotations

import gzip
import subprocess
from pathlib import Path
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
    assert stub_origin.settled_count("GET", path, 1) == 1
    # The origin's CDN headers pass through untouched for a commercial CDN in front.
    assert second.headers["Cache-Control"] == "public, max-age=604800, immutable"


def test_cache_lock_one_origin_fetch_for_ten_concurrent(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('slow')}"  # the stub takes 0.5 s, so all ten arrive while it works
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: get(stub_nginx, path), range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert len({r.content for r in responses}) == 1
    assert stub_origin.settled_count("GET", path, 1) == 1
    statuses = sorted(r.headers["X-Cache-Status"] for r in responses)
    assert statuses.count("MISS") == 1, statuses


def test_redirect_is_never_cached(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('redirect')}"
    for _ in range(2):
        r = get(stub_nginx, path, allow_redirects=False)
        assert r.status_code == 302
        assert r.headers["X-Cache-Status"] == "MISS"
    assert stub_origin.settled_count("GET", path, 2) == 2


def test_404_cached_briefly(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('missing')}"
    assert get(stub_nginx, path).headers["X-Cache-Status"] == "MISS"
    again = get(stub_nginx, path)
    assert again.status_code == 404 and again.headers["X-Cache-Status"] == "HIT"
    assert stub_origin.settled_count("GET", path, 1) == 1
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
    assert stub_origin.settled_count("POST", "/ocr", before + 2) == before + 2
    entries = [e for e in stub_nginx.access_entries() if e["method"] == "POST"]
    assert entries and all(e["cache"] == "" for e in entries)


def wait_until_expired(nginx: NginxServer, path: str, timeout: float = 6.0) -> requests.Response:
    """GET `path` until nginx stops calling its entry fresh (max-age=1 is whole seconds of nginx's
    clock: up to 2 s of wall time); return the first answer that is not a HIT."""
    deadline = time.monotonic() + timeout
    while True:
        r = get(nginx, path)
        if r.headers.get("X-Cache-Status") != "HIT" or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_stale_served_when_origin_down_after_expiry(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('short-ttl')}"  # the stub sends max-age=1
    first = get(stub_nginx, path)
    assert first.headers["X-Cache-Status"] == "MISS"
    stub_origin.stop()
    try:
        stale = wait_until_expired(stub_nginx, path)  # the origin is down: no refresh can succeed
        assert stale.status_code == 200
        assert stale.headers["X-Cache-Status"] == "STALE"
        assert stale.json() == first.json()
        # Uncached key with the origin down: a fast, clean 502 (connection refused), no hang.
        t0 = time.monotonic()
        down = get(stub_nginx, f"/results/{fresh('k')}")
        assert down.status_code in (502, 504)
        assert down.json()["error"]["code"] in ("origin_unavailable", "origin_timeout")
        assert down.headers["Cache-Control"] == "no-store"
        assert down.headers["X-Cache-Status"] == "MISS"  # on every /results/ answer, errors too
        assert time.monotonic() - t0 < 5.0  # "not a hang": the default read timeout would be 60 s
    finally:
        stub_origin.start()


def test_expired_entry_is_refreshed_in_the_background(stub_nginx: NginxServer,
                                                      stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('short-ttl')}"  # each origin answer carries its own served_at
    first = get(stub_nginx, path)
    assert first.headers["X-Cache-Status"] == "MISS"
    # The first request after expiry gets the old copy at once (STALE) while a background
    # subrequest fetches a new one: without background update it would wait for the origin and
    # get the new body with EXPIRED.
    stale = wait_until_expired(stub_nginx, path)
    assert stale.headers["X-Cache-Status"] == "STALE"
    assert stale.json() == first.json()
    deadline = time.monotonic() + 5
    while True:  # the refreshed copy replaces it shortly after (UPDATING while in flight)
        fresh_copy = get(stub_nginx, path)
        if fresh_copy.headers["X-Cache-Status"] == "HIT" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert fresh_copy.headers["X-Cache-Status"] == "HIT"
    assert fresh_copy.json()["served_at"] > first.json()["served_at"]
    assert stub_origin.settled_count("GET", path, 2) == 2


def test_origin_errors_keep_serving_the_stale_copy(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    path = f"/results/{fresh('flaky')}"  # 200 (max-age=1) once, then 503 for ever
    first = get(stub_nginx, path)
    assert first.status_code == 200 and first.headers["X-Cache-Status"] == "MISS"
    stale = wait_until_expired(stub_nginx, path)
    for answer in (stale, get(stub_nginx, path), get(stub_nginx, path)):
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Cache-Status"] in ("STALE", "UPDATING")
        assert answer.json() == first.json()
    assert stub_origin.settled_count("GET", path, 2) >= 2  # it did ask the origin again: 503s


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
    assert stub_origin.settled_count("GET", path, 1) == 1
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


def test_cachestats_reads_the_real_access_log(stub_nginx: NginxServer, tmp_path, capsys) -> None:
    """The log format nginx really writes and the parser of `ocr-origin cachestats` agree."""
    import json

    from origin import cachestats

    token = fresh("stats")
    hot, cold = f"/results/{token}-hot", f"/results/{token}-cold"
    bodies = [get(stub_nginx, p) for p in (hot, hot, hot, hot, cold)]  # MISS HIT HIT HIT MISS
    requests.post(stub_nginx.url + "/ocr", data=b"x", headers={"Content-Type": "image/png",
                                                                "X-Request-Id": f"{token}-post"},
                  allow_redirects=False, timeout=10)
    time.sleep(0.1)
    mine = [line for line in stub_nginx.access_log.read_text().splitlines() if token in line]
    log = tmp_path / "access.log"
    log.write_text("\n".join(mine) + "\n")
    assert cachestats.main(["--json", "--top", "2", str(log)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["requests"] == 6 and stats["bad_lines"] == 0
    assert stats["by_status"] == {"HIT": 3, "MISS": 2, "NONE": 1}
    assert stats["hit_ratio"] == 0.6
    assert stats["bytes"]["from_cache"] == 3 * len(bodies[0].content)
    assert stats["top_keys"][0] == {"uri": hot, "requests": 4, "max_overcount": 0}
    assert stats["latency_s"]["HIT"]["count"] == 3 and stats["latency_s"]["MISS"]["count"] == 2
    assert json.loads(mine[0])["msec"] > 1e9  # epoch seconds, what the time buckets use


def rendered_directives(tmp_path) -> dict[str, dict[str, list[str]]]:
    """{location or "server": {directive: [args, ...]}} of the rendered config, snippets inlined."""
    import re

    render = load_nginx_render()
    conf = render.write_config(tmp_path / "nginx.conf", render.values_for(tmp_path, listen="127.0.0.1:1"))

    def inline(text: str) -> str:
        return re.sub(r"^\s*include\s+(\S+);", lambda m: inline(Path(m.group(1)).read_text()), text, flags=re.M)

    text = re.sub(r"#[^\n]*", "", inline(conf.read_text()))
    blocks: dict[str, dict[str, list[str]]] = {}
    stack = ["main"]
    for stmt in re.findall(r"[^;{}]+[;{]|}", text):
        stmt = " ".join(stmt.split())
        if stmt == "}":
            stack.pop()
        elif stmt.endswith("{"):
            stack.append(stmt[:-1].strip())
        else:
            name, _, args = stmt[:-1].partition(" ")
            blocks.setdefault(stack[-1], {}).setdefault(name, []).append(args)
    return blocks


def test_rendered_timeouts_and_stale_policy(tmp_path) -> None:
    d = rendered_directives(tmp_path)
    server, results, upload = d["server"], d["location /results/"], d["location = /ocr"]
    # A dead origin: refused at once; an unanswered SYN gives up after 2 s, not the default 60 s.
    assert server["proxy_connect_timeout"] == ["2s"]
    assert results["proxy_read_timeout"] == ["10s"] and upload["proxy_read_timeout"] == ["120s"]
    assert results["proxy_cache_use_stale"] == ["error timeout updating http_500 http_502 http_503 http_504"]
    assert results["proxy_cache_background_update"] == ["on"]
    assert results["proxy_cache_lock"] == ["on"]
    assert results["proxy_cache_key"] == ["$uri"]
    assert results["proxy_cache_valid"] == ["200 7d", "404 1m"]
    assert upload["proxy_cache"] == ["off"]
    assert "$upstream_cache_status always" in " ".join(results["add_header"])
    assert any("inactive=7d" in a for a in d["http"]["proxy_cache_path"])
    assert d["http"]["client_max_body_size"] == ["20971520"]
    assert d["http"]["gzip_types"] == ["application/json text/plain"]
