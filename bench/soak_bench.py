#!/usr/bin/env python3
"""Soak benchmark: mixed traffic through nginx for a while; errors, p99s and worker RSS growth.

    .venv/bin/python bench/soak_bench.py                      # 10,000 requests, own stack in a temp dir
    .venv/bin/python bench/soak_bench.py --requests 2000 --concurrency 4

The mix (seeded): new uploads (MISS, recognition), repeated uploads (HIT), result and
thumbnail GETs (nginx cache), and bad input (corrupt images, malformed keys, dot-segment paths,
wrong content types). An error is a 5xx or an answer of the wrong class for its kind (e.g. a
corrupt image that is not a 4xx). Worker RSS is read from /proc after a warm-up (the same mix,
--warmup requests, errors counted too) and at the end;
the goal is 0 errors and growth of at most 5 %. The stack has no rate limit (one client).
"""
from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.load_bench import render_line  # noqa: E402

KINDS = {  # kind: (weight, expected status class)
    "upload_new": (5, 3),
    "upload_repeat": (20, 3),
    "get_result": (45, 2),
    "get_thumbnail": (10, 2),
    "bad_image": (8, 4),
    "bad_key": (6, 4),
    "bad_path": (3, 4),
    "bad_type": (3, 4),
}


def worker_rss(master: int) -> dict[int, int]:
    """RSS in bytes of each gunicorn worker (children of the master)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
            if int(fields[1]) == master:  # ppid
                pid = int(stat.parent.name)
                rss_pages = int((stat.parent / "statm").read_text().split()[1])
                out[pid] = rss_pages * 4096
        except (OSError, ValueError, IndexError):
            continue
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=1000,
                        help="mixed requests before the first RSS reading (every worker through every path)")
    args = parser.parse_args(argv)

    from tests.servers import NginxServer, OriginServer, RedisServer, WorkerProcess

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ocr-soak-")))
        redis = RedisServer(tmp / "redis").start()
        stack.callback(redis.stop)
        env = {"OCR_REDIS_URL": redis.url, "OCR_STORAGE_URL": f"file://{tmp / 'results'}",
               "OCR_SECRET": secrets.token_hex(32), "OCR_LOG_LEVEL": "WARNING", "OCR_RATE_LIMIT": "0",
               "OCR_MAX_REQUESTS": "0"}  # no recycling: the RSS figure is one worker's lifetime
        worker = WorkerProcess(tmp / "worker", env, name="soak-bench-worker").start()  # recognition
        stack.callback(worker.stop)
        origin = OriginServer(tmp / "origin", env, workers=args.workers, ready_path="/readyz").start()
        stack.callback(origin.stop)
        nginx = NginxServer(tmp / "nginx", upstream=origin.address).start()
        stack.callback(nginx.stop)
        base = nginx.url
        assert origin.proc is not None

        rng = random.Random(args.seed)
        session = requests.Session()
        uploaded: list[bytes] = []
        keys: list[str] = []
        lock = threading.Lock()
        counter = iter(range(10**9))

        def upload(data: bytes) -> requests.Response:
            return requests.post(base + "/ocr", data=data, headers={"Content-Type": "image/png"},
                                 allow_redirects=False, timeout=120)

        # warm-up: a few results to read, and each worker past its first requests
        for i in range(20):
            data = render_line(f"soak warm-up {i} {secrets.token_hex(3)}")
            r = upload(data)
            uploaded.append(data)
            keys.append(r.headers["Location"].rsplit("/", 1)[-1])
        for key in keys:
            session.get(base + f"/results/{key}", timeout=30)

        names = list(KINDS)
        weights = [KINDS[k][0] for k in names]
        warmup = [rng.choices(names, weights)[0] for _ in range(args.warmup)]
        plan = [rng.choices(names, weights)[0] for _ in range(args.requests)]
        latencies: dict[str, list[float]] = {k: [] for k in names}
        errors: list[str] = []

        def one(kind: str) -> None:
            n = next(counter)
            with lock:
                key = rng.choice(keys)
                repeat = rng.choice(uploaded)
            t0 = time.perf_counter()
            if kind == "upload_new":
                r = upload(render_line(f"soak {n} {secrets.token_hex(4)}"))
            elif kind == "upload_repeat":
                r = upload(repeat)
            elif kind == "get_result":
                r = requests.get(base + f"/results/{key}", timeout=30)
            elif kind == "get_thumbnail":
                r = requests.get(base + f"/results/{key}/thumbnail.jpg", timeout=30)
            elif kind == "bad_image":
                r = upload(repeat[: len(repeat) // 3] + secrets.token_bytes(64))
            elif kind == "bad_key":
                r = requests.get(base + f"/results/NOT-A-KEY-{n}", timeout=30)
            elif kind == "bad_path":
                r = requests.get(base + f"/results/x/%2e%2e/{key}", timeout=30)
            else:
                r = requests.post(base + "/ocr", data=b"hello", headers={"Content-Type": "text/plain"}, timeout=30)
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                latencies[kind].append(ms)
                if r.status_code >= 500 or r.status_code // 100 != KINDS[kind][1]:
                    errors.append(f"{kind} {r.status_code} {r.text[:120]!r}")
                if kind == "upload_new" and r.status_code == 303:
                    keys.append(r.headers["Location"].rsplit("/", 1)[-1])

        # The same mix first, unmeasured: a worker's first requests of each kind allocate what it
        # then keeps (imports, pools, caches); growth after that is what a leak would show.
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, warmup))
        errors_in_warmup = len(errors)
        latencies = {k: [] for k in names}
        rss_before = worker_rss(origin.proc.pid)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, plan))
        seconds = time.perf_counter() - t0
        rss_after = worker_rss(origin.proc.pid)

        def pct(values: list[float], q: float) -> float:
            return round(statistics.quantiles(values, n=100)[q - 1], 1) if len(values) >= 2 else float("nan")

        common = set(rss_before) & set(rss_after)
        growth = {pid: round(100 * (rss_after[pid] - rss_before[pid]) / rss_before[pid], 2) for pid in common}
        report = {
            "requests": args.requests, "seconds": round(seconds, 1), "rps": round(args.requests / seconds, 1),
            "errors": len(errors), "errors_in_warmup": errors_in_warmup, "first_errors": errors[:5],
            "by_kind": {k: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)} for k, v in latencies.items()},
            "worker_rss_mb": {str(pid): [round(rss_before[pid] / 2**20, 1), round(rss_after[pid] / 2**20, 1)]
                              for pid in common},
            "worker_rss_growth_pct": growth,
            "workers_replaced": sorted(set(rss_before) ^ set(rss_after)),
        }
        print(json.dumps(report, indent=2))
        ok = not errors and common and max(growth.values()) <= 5.0
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
