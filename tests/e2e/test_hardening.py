"""Hostile requests against the real nginx + gunicorn (issue 16 items 3, 8, 9).

Raw sockets, not `requests`: urllib3 normalises dot segments before sending, which is exactly
what an attacker's `curl --path-as-is` does not do.
"""
from __future__ import annotations

import io
import json
import secrets
import socket
import uuid
from typing import Iterator

import pytest
from PIL import Image

from tests.servers import NginxServer, OriginServer, RedisServer


def raw(port: int, request: bytes, *, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Send `request` as is; return status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    if headers.get("transfer-encoding") == "chunked":  # small bodies: one chunk then 0
        size, _, rest = body.partition(b"\r\n")
        body = rest[:int(size, 16)]
    return status, headers, body


def get(port: int, path: str, *, host: str = "localhost", extra: str = "", source: str = "127.0.0.1"):
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n".encode("latin1")
    return raw(port, req, source=source)


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict:
    assert status == expected, (status, body[:300])
    assert headers["content-type"].startswith("application/json"), headers
    doc = json.loads(body)
    assert doc["error"]["status"] == expected and doc["error"]["code"] and doc["error"]["message"]
    return doc


def test_dot_segments_never_poison_the_cache(stub_nginx: NginxServer, stub_origin: OriginServer) -> None:
    name = f"k-{uuid.uuid4().hex[:12]}"
    for path in (f"/results/aaaa/../{name}", f"/results/aaaa/%2e%2e/{name}", f"/results/aaaa%2F..%2F{name}",
                 f"/results//{name}", f"/results/./{name}", f"/results/x/..%2f{name}"):
        status, headers, body = get(stub_nginx.port, path)
        assert_json_error(status, headers, body, 400)
    # The entry for the real path holds what the origin answered for exactly that path.
    status, headers, body = get(stub_nginx.port, f"/results/{name}")
    assert status == 200 and json.loads(body)["key"] == name
    assert stub_origin.count_requests("GET", f"/results/aaaa/../{name}") == 0
    # and the query string never reaches the origin (it is not part of the cache key)
    other = f"k-{uuid.uuid4().hex[:12]}"
    status, _, body = get(stub_nginx.port, f"/results/{other}?x=1")
    assert status == 200 and json.loads(body)["key"] == other
    assert stub_origin.settled_count("GET", f"/results/{other}", 1) == 1


def test_nginx_own_errors_are_json(stub_nginx: NginxServer) -> None:
    port = stub_nginx.port
    assert_json_error(*raw(port, b"GARBAGE\r\n\r\n"), 400)
    assert_json_error(*get(port, "/results/" + "a" * 20000), 414)
    assert_json_error(*get(port, "/healthz", extra="X-Big: " + "b" * 40000 + "\r\n"), 400)
    assert_json_error(*raw(port, b"TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 405)
    assert_json_error(*get(port, "/results/has%20space"), 400)


def test_operator_endpoints_only_from_loopback_allow_list(stub_nginx: NginxServer) -> None:
    # 127.0.0.2 is loopback too, but not on the allow list: it stands for any remote client.
    for path in ("/metrics", "/readyz"):
        assert_json_error(*get(stub_nginx.port, path, source="127.0.0.2"), 403)
    status, _, _ = get(stub_nginx.port, "/healthz", source="127.0.0.2")
    assert status == 200
    status, _, _ = get(stub_nginx.port, "/metrics")  # the stub has no /metrics: it answers 404
    assert status == 404


def test_redirects_do_not_reflect_the_host_header(stub_nginx: NginxServer) -> None:
    status, headers, _ = get(stub_nginx.port, "/results", host="evil.example")
    assert status == 301
    assert "evil.example" not in headers["location"] and headers["location"].startswith("/")


def test_gunicorn_own_errors_are_json(stub_origin: OriginServer) -> None:
    port = stub_origin.port
    assert_json_error(*raw(port, b"GARBAGE\r\n\r\n"), 400)
    assert_json_error(*get(port, "/healthz", extra="".join(f"X-H{i}: v\r\n" for i in range(200))), 431)
    assert_json_error(*raw(port, b"POST /ocr HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: frobnicate\r\n"
                                 b"Connection: close\r\n\r\n"), 501)


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    """Redis, the real origin with a tiny upload budget (no recognition worker: new content is
    a 503 queue_unavailable once past the limiter, which answers first) and nginx in front."""
    redis_server = RedisServer(tmp_path_factory.mktemp("limit-redis")).start()
    env = {"OCR_REDIS_URL": redis_server.url, "OCR_SECRET": secrets.token_hex(32),
           "OCR_STORAGE_URL": f"file://{tmp_path_factory.mktemp('limit-results')}",
           "OCR_RATE_LIMIT": "0.01", "OCR_RATE_BURST": "2"}
    origin = OriginServer(tmp_path_factory.mktemp("limit-origin"), env, workers=1, start_timeout=60)
    origin.start()
    nginx = NginxServer(tmp_path_factory.mktemp("limit-nginx"), upstream=origin.address).start()
    yield nginx
    nginx.stop()
    origin.stop()
    redis_server.stop()


def _post_png(port: int, *, source: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), (uuid.uuid4().int % 256, 128, 128)).save(buf, "PNG")
    body = buf.getvalue()
    head = (f"POST /ocr HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n").encode("latin1")
    return raw(port, head + body, source=source)


def test_rate_limit_through_nginx_is_per_client_and_cannot_be_spoofed(limited_stack: NginxServer) -> None:
    """Issue 16 item 7 on the real stack: behind nginx the origin sees every client as nginx's
    address; the bucket is the client's own address (nginx's X-Real-IP, which overwrites any
    X-Real-IP the client sends), so clients do not share one budget and cannot pick another."""
    port = limited_stack.port
    for _ in range(2):  # let through by the limiter (no worker to read them)
        doc = assert_json_error(*_post_png(port, source="127.0.0.2"), 503)
        assert doc["error"]["code"] == "queue_unavailable"
    for n in range(3):  # a forged X-Real-IP does not buy a fresh bucket
        status, headers, body = _post_png(port, source="127.0.0.2", extra=f"X-Real-IP: 198.51.100.{n}\r\n")
        doc = assert_json_error(status, headers, body, 429)
        assert doc["error"]["code"] == "rate_limited" and int(headers["retry-after"]) >= 1
    # another client has its own budget
    assert assert_json_error(*_post_png(port, source="127.0.0.3"), 503)["error"]["code"] == "queue_unavailable"
