#!/usr/bin/env python3
"""CDN layer benchmark: cached HITs through nginx vs the origin directly, plus MISS/HIT timings.

    .venv/bin/python bench/load_bench.py                 # starts its own stack in a temp dir
    .venv/bin/python bench/load_bench.py --nginx http://127.0.0.1:8080 --origin http://127.0.0.1:8000
                                                         # against a running `make run`

Steps: after a warm-up, upload rendered invoice lines through nginx (time of a MISS upload:
decode, pHash, recognition, storage, index), upload each again (dedup HIT), fetch the results
through nginx (MISS, then HITs), then load one `/results/<key>` URL through nginx and through
the origin directly, and print both and their ratio.
The load uses wrk when it is installed (Debian package `wrk`), else a threaded Python client
with a fixed request count. Loopback only, bounded in time and count.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import logging
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers starts the stack

import requests  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

logger = logging.getLogger("bench.load_bench")

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@dataclass
class LoadResult:
    target: str
    tool: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def render_line(text: str, size: int = 32) -> bytes:
    font = ImageFont.truetype(FONT, size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right - left + size, bottom - top + size), "white")
    ImageDraw.Draw(img).text((size // 2 - left, size // 2 - top), text, font=font, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"load_bench: refusing to load {host}: loopback only")


# ----------------------------------------------------------------------------- load generators
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, *, seconds: int, connections: int, threads: int) -> LoadResult:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return LoadResult(url, f"wrk -t{threads} -c{connections} -d{seconds}s", total, float(seconds), rps,
                      _ms(pct["50"]), _ms(pct["99"]), errors)


def run_python(url: str, *, count: int, connections: int) -> LoadResult:
    """`count` GETs over `connections` keep-alive connections (one thread each)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    per_thread = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]

    def worker(n: int) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    bad += 1
                if resp.will_close:  # gunicorn sync workers close every connection
                    conn.close()
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            mine.append((time.perf_counter() - t0) * 1000)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker, args=(n,)) for n in per_thread]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    latencies.sort()
    return LoadResult(url, f"python threads c={connections} n={count}", count, seconds, count / seconds,
                      latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                      errors)


def load(url: str, args: argparse.Namespace, count: int) -> LoadResult:
    if shutil.which("wrk") and not args.python_client:
        return run_wrk(url, seconds=args.seconds, connections=args.connections, threads=args.threads)
    return run_python(url, count=count, connections=args.connections)


# ----------------------------------------------------------------------------- stack
def start_stack(stack: ExitStack, workers: int) -> tuple[str, str]:
    """redis-server + gunicorn origin.wsgi:app (file storage) + nginx, all in a temp dir."""
    import secrets

    from tests.servers import NginxServer, OriginServer, RedisServer, WorkerProcess

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ocr-bench-")))
    redis = RedisServer(tmp / "redis").start()
    stack.callback(redis.stop)
    env = {"OCR_REDIS_URL": redis.url, "OCR_STORAGE_URL": f"file://{tmp / 'results'}",
           "OCR_SECRET": secrets.token_hex(32), "OCR_LOG_LEVEL": "WARNING"}
    worker = WorkerProcess(tmp / "worker", env, name="load-bench-worker").start()  # recognition
    stack.callback(worker.stop)
    origin = OriginServer(tmp / "origin", env, workers=workers, ready_path="/readyz").start()
    stack.callback(origin.stop)
    nginx = NginxServer(tmp / "nginx", upstream=origin.address).start()
    stack.callback(nginx.stop)
    return nginx.url, origin.url


def timed(fn, *a, **kw) -> tuple[float, requests.Response]:  # noqa: ANN001
    t0 = time.perf_counter()
    r = fn(*a, **kw)
    return (time.perf_counter() - t0) * 1000, r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nginx", help="nginx base URL of a running stack (default: start one)")
    parser.add_argument("--origin", help="origin base URL of a running stack")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the stack it starts")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per target (default 5)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--requests", type=int, default=3000, help="Python client: requests per target")
    parser.add_argument("--hits", type=int, default=50, help="sequential HITs timed through nginx")
    parser.add_argument("--uploads", type=int, default=5, help="distinct images timed as MISS, then HIT")
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 60 or not 1 <= args.requests <= 200_000:
        parser.error("bounded on purpose: --seconds 1..60, --requests 1..200000")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with ExitStack() as stack:
        if args.nginx and args.origin:
            nginx_url, origin_url = args.nginx.rstrip("/"), args.origin.rstrip("/")
        elif args.nginx or args.origin:
            parser.error("give both --nginx and --origin, or neither")
        else:
            nginx_url, origin_url = start_stack(stack, args.workers)
        require_loopback(nginx_url)
        require_loopback(origin_url)

        def post(png: bytes) -> tuple[float, requests.Response]:
            return timed(requests.post, nginx_url + "/ocr", allow_redirects=False, timeout=120,
                         files={"image": ("invoice.png", png, "image/png")})

        def invoice() -> bytes:  # a text no earlier run uploaded, so its first upload is a MISS
            return render_line(f"Invoice No. 2026-0042 Total: $1,234.56 ref {uuid.uuid4().hex[:6]}")

        # Warm-up: the first request of each gunicorn worker pays one-off costs (lazy imports,
        # allocator growth); two concurrent pairs reach both workers of the default stack.
        for _ in range(2):
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda _: post(invoice()), range(2)))

        miss_upload, dedup_upload, miss_get = [], [], []
        paths = []
        for _ in range(args.uploads):
            png = invoice()
            ms, r = post(png)
            assert r.status_code == 303 and r.headers.get("X-OCR-Cache") == "MISS", (r.status_code, r.headers)
            miss_upload.append(ms)
            ms, r2 = post(png)
            assert r2.headers.get("X-OCR-Cache") == "HIT", r2.headers
            dedup_upload.append(ms)
            paths.append(r.headers["Location"])
        session = requests.Session()
        for p in paths:
            ms, first = timed(session.get, nginx_url + p, timeout=10)
            assert first.headers["X-Cache-Status"] == "MISS", first.headers
            miss_get.append(ms)
        path = paths[0]
        hit_ms = []
        for _ in range(args.hits):
            ms, resp = timed(session.get, nginx_url + path, timeout=10)
            assert resp.headers["X-Cache-Status"] == "HIT"
            hit_ms.append(ms)
        body_bytes = len(first.content)

        via_nginx = load(nginx_url + path, args, args.requests)
        direct = load(origin_url + path, args, max(500, args.requests // 3))

    ratio = via_nginx.rps / direct.rps if direct.rps else float("inf")
    p50_ratio = direct.p50_ms / via_nginx.p50_ms if via_nginx.p50_ms else float("inf")
    med = statistics.median
    print(f"\nresult body {body_bytes} bytes; {args.uploads} uploads after warm-up, median (max):")
    print(f"MISS upload (POST /ocr through nginx, recognition ran)   {med(miss_upload):8.1f} ms "
          f"({max(miss_upload):.1f})")
    print(f"dedup HIT upload (same image again, no inference)        {med(dedup_upload):8.1f} ms "
          f"({max(dedup_upload):.1f})")
    print(f"GET result through nginx, cache MISS                     {med(miss_get):8.2f} ms "
          f"({max(miss_get):.2f})")
    print(f"GET result through nginx, cache HIT ({args.hits} sequential)      {med(hit_ms):8.2f} ms "
          f"({max(hit_ms):.2f})")
    print(f"\n{'target':<8} {'tool':<28} {'requests':>9} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name, res in (("nginx", via_nginx), ("origin", direct)):
        print(f"{name:<8} {res.tool:<28} {res.requests:>9} {res.rps:>10.0f} {res.p50_ms:>8.2f} "
              f"{res.p99_ms:>8.2f} {res.errors:>6}")
    print(f"\nnginx HIT / origin direct: throughput {ratio:.1f}x, p50 latency {p50_ratio:.1f}x lower")
    if args.json:
        print(json.dumps({"miss_upload_ms": miss_upload, "dedup_upload_ms": dedup_upload,
                          "miss_get_ms": miss_get, "hit_get_median_ms": med(hit_ms),
                          "nginx": asdict(via_nginx), "origin": asdict(direct), "ratio": ratio,
                          "p50_ratio": p50_ratio}, indent=2))
    return 0 if via_nginx.errors == 0 and direct.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
