"""Hostile requests against the real nginx + gunicorn (issue 16 items 3, 8, 9).

Raw sockets, not `requests`: urllib3 normalises dot segments before sending, which is exactly
what an attacker's `curl --path-as-is` does not do.
"""
from __future__ import annotations

import json
import socket
import uuid

from tests.servers import NginxServer, OriginServer


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
