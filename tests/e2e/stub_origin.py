"""A tiny WSGI origin with scripted answers, to test the nginx config alone.

It stands in for the real origin only in tests/e2e/test_nginx_config.py, where each path makes
the upstream behave in one specific way (short TTL, failing after one answer, redirect, 404,
slow, echo headers). The real origin is exercised by tests/e2e/test_flow.py.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Iterable

StartResponse = Callable[..., object]


def _json(start_response: StartResponse, status: str, body: object,
          headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json; charset=utf-8"),
                            ("Content-Length", str(len(data)))] + (headers or []))
    return [data]


IMMUTABLE = [("Cache-Control", "public, max-age=604800, immutable")]
# Shared by the stub's workers: which "flaky" keys have already answered once.
STATE_DIR = os.environ.get("OCR_STUB_STATE_DIR") or "/tmp"


def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/healthz":
        return _json(start_response, "200 OK", {"ok": True}, [("Cache-Control", "no-store")])
    if path == "/echo-headers":
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        return _json(start_response, "200 OK", headers, [("Cache-Control", "no-store")])
    if method == "POST" and path == "/ocr":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"].read(length)
        start_response("303 See Other", [("Location", "/results/posted"), ("Cache-Control", "no-store"),
                                         ("Content-Length", "0")])
        return [b""]
    if not path.startswith("/results/"):
        return _json(start_response, "404 Not Found", {"error": "not_found"}, [("Cache-Control", "no-store")])
    name = path[len("/results/"):]
    # Each answer carries the serving pid and time so tests can tell a cached copy from a new one.
    stamp = {"key": name, "pid": os.getpid(), "served_at": time.time()}
    if name.startswith("short-ttl"):
        return _json(start_response, "200 OK", stamp, [("Cache-Control", "public, max-age=1")])
    if name.startswith("flaky"):
        # First answer: 200 with a 1 s TTL; every later one: 503, as an origin in trouble.
        marker = os.path.join(STATE_DIR, "stub-flaky-" + name.replace("/", "_"))
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return _json(start_response, "503 Service Unavailable", {"error": "unavailable"},
                         [("Cache-Control", "no-store")])
        os.close(fd)
        return _json(start_response, "200 OK", stamp, [("Cache-Control", "public, max-age=1")])
    if name.startswith("redirect"):
        # A cacheable-looking redirect: nginx must still not store it.
        start_response("302 Found", [("Location", "/results/elsewhere"),
                                     ("Cache-Control", "public, max-age=3600"), ("Content-Length", "0")])
        return [b""]
    if name.startswith("missing"):
        # No Cache-Control: nginx's own proxy_cache_valid 404 applies.
        return _json(start_response, "404 Not Found", {"error": "not_found", **stamp})
    if name.startswith("slow"):
        time.sleep(0.5)  # long enough for 10 concurrent requests to pile up on the cache lock
        return _json(start_response, "200 OK", stamp, IMMUTABLE)
    if name.startswith("big"):
        return _json(start_response, "200 OK", {**stamp, "text": "lorem ipsum " * 500}, IMMUTABLE)
    return _json(start_response, "200 OK", stamp, IMMUTABLE)
