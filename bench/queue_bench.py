#!/usr/bin/env python3
"""Recognition queue benchmark: upload throughput against 1, 2 and 4 workers, and the MISS
latency of a one-line image through the queue against the in-request recognition it replaced.

    .venv/bin/python bench/queue_bench.py                     # 1, 2, 4 workers
    .venv/bin/python bench/queue_bench.py --workers 1 --baseline   # + the MISS latency against
                                                              #   recognition inside the request

Starts its own redis-server, one gunicorn origin (2 processes, threads) with file storage in a
temp dir, and N `ocr-origin worker` processes. For each N: distinct one-line images and distinct
12-line pages uploaded by 8 concurrent clients through the sync path (POST /ocr, waiting up to
OCR_SYNC_WAIT_S); uploads/s and p50/p99 of each upload's latency. Then the MISS latency of a
one-line image with one worker, sequentially (median of --latency-n), alternating with the
baseline origin when --baseline is given (bench/inline_origin.py: this code and model with
recognition inside the request, as before the queue), so both see the same load; the workers
then run at the baseline's CPU priority (nice 0). Prints JSON. Loopback only, bounded in count.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers starts the servers

import requests  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from tests.servers import OriginServer, RedisServer, WorkerProcess  # noqa: E402

logger = logging.getLogger("bench.queue_bench")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CLIENTS = 8


def one_line() -> bytes:
    text = f"Invoice {uuid.uuid4().int % 10**8:08d} total ${uuid.uuid4().int % 10**5 / 100:,.2f}"
    font = ImageFont.truetype(FONT, 32)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right - left + 32, bottom - top + 32), "white")
    ImageDraw.Draw(img).text((16 - left, 16 - top), text, font=font, fill="black")
    return _png(img)


def page(lines: int = 12) -> bytes:
    font = ImageFont.truetype(FONT, 22)
    img = Image.new("RGB", (1000, 40 + 34 * lines), "white")
    draw = ImageDraw.Draw(img)
    tag = uuid.uuid4().hex[:8]
    for i in range(lines):
        draw.text((30, 20 + 34 * i), f"{tag} item {i:02d}: delivery of parts {i * 7919 % 10007} units",
                  font=font, fill="black")
    return _png(img)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def post(base: str, png: bytes) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = requests.post(f"{base}/ocr", data=png, headers={"Content-Type": "image/png"},
                      allow_redirects=False, timeout=300)
    return (time.perf_counter() - t0) * 1000, r.status_code


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def throughput(base: str, images: list[bytes]) -> dict[str, Any]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda png: post(base, png), images))
    seconds = time.perf_counter() - t0
    ms = [a[0] for a in answers]
    return {"uploads": len(images), "seconds": round(seconds, 2), "uploads_per_s": round(len(images) / seconds, 2),
            "p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99),
            "status": {str(s): sum(1 for a in answers if a[1] == s) for s in sorted({a[1] for a in answers})}}


def sequential_miss_ms(bases: dict[str, str], n: int) -> dict[str, Any]:
    """MISS latency of distinct one-line uploads, one at a time, alternating between the origins
    in `bases` so that every origin sees the same machine load (this host is shared)."""
    for base in bases.values():
        post(base, one_line())  # warm-up (first request of a process)
    ms: dict[str, list[float]] = {name: [] for name in bases}
    for _ in range(n):
        for name, base in bases.items():
            elapsed, status = post(base, one_line())
            assert status == 303, status
            ms[name].append(elapsed)
    return {name: {"n": n, "median_ms": round(statistics.median(v), 1), "p90_ms": pct(v, 0.9)}
            for name, v in ms.items()}


def job_stages(worker: WorkerProcess, last: int) -> dict[str, float]:
    """Medians of the stages the worker logs for each job (origin/worker.py): enqueued ->
    running, decode and key check, recognition, storing."""
    lines = [line for line in worker.log_lines() if " job done key=" in line][-last:]
    stages: dict[str, list[float]] = {}
    for line in lines:
        for name, value in re.findall(r"(\w+)_ms=([0-9.]+)", line):
            stages.setdefault(name, []).append(float(value))
    return {name: round(statistics.median(v), 1) for name, v in stages.items()}


def start_baseline(stack: ExitStack, tmp: Path, env: dict[str, str]) -> str:
    """A gunicorn origin of this checkout with recognition inside the request, as before the
    queue (bench/inline_origin.py): same code, model, storage and index, no queue."""
    server = OriginServer(tmp / "baseline", {**env, "OCR_WORKER_NICE": "0"}, app="bench.inline_origin:app",
                          workers=1, ready_path="/readyz").start()
    stack.callback(server.stop)
    return server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--lines", type=int, default=40, help="one-line uploads per worker count")
    parser.add_argument("--pages", type=int, default=12, help="page uploads per worker count")
    parser.add_argument("--latency-n", type=int, default=30, help="sequential MISS uploads for the latency")
    parser.add_argument("--baseline", action="store_true",
                        help="compare the MISS latency with recognition inside the request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out: dict[str, Any] = {"cpus": os.cpu_count(), "clients": CLIENTS, "throughput": {}}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ocr-queue-bench-")))
        redis = RedisServer(tmp / "redis").start()
        stack.callback(redis.stop)
        env = {"OCR_REDIS_URL": redis.url, "OCR_STORAGE_URL": f"file://{tmp / 'results'}",
               "OCR_SECRET": secrets.token_hex(32), "OCR_LOG_LEVEL": "WARNING", "OCR_SYNC_WAIT_S": "60"}
        origin = OriginServer(tmp / "origin", env, workers=2, ready_path="/readyz").start()
        # against the baseline, the workers get its CPU priority (nice 0), not the default 10
        worker_env = {**env, "OCR_LOG_LEVEL": "INFO", **({"OCR_WORKER_NICE": "0"} if args.baseline else {})}
        out["worker_nice"] = int(worker_env.get("OCR_WORKER_NICE", os.environ.get("OCR_WORKER_NICE", "10")))
        stack.callback(origin.stop)
        for n in [int(x) for x in args.workers.split(",")]:
            workers = [WorkerProcess(tmp / f"workers-{n}", worker_env, name=f"bench-{n}-{i}").start()
                       for i in range(n)]
            try:
                post(origin.url, one_line())  # warm-up
                if args.lines and args.pages:  # 0: the MISS latency only
                    logger.info("%d worker(s): one-line uploads", n)
                    lines = throughput(origin.url, [one_line() for _ in range(args.lines)])
                    logger.info("%d worker(s): pages", n)
                    pages = throughput(origin.url, [page() for _ in range(args.pages)])
                    out["throughput"][str(n)] = {"one_line": lines, "page": pages}
                    logger.info("%d worker(s): %s", n, out["throughput"][str(n)])
                if n == 1:
                    bases = {"queue": origin.url}
                    if args.baseline:
                        bases["baseline"] = start_baseline(stack, tmp, env)
                    out["miss_latency"] = sequential_miss_ms(bases, args.latency_n)
                    out["worker_stages_ms"] = job_stages(workers[0], args.latency_n)
                    logger.info("MISS latency: %s", out["miss_latency"])
                    if args.baseline:
                        out["miss_latency_delta_ms"] = round(out["miss_latency"]["queue"]["median_ms"]
                                                             - out["miss_latency"]["baseline"]["median_ms"], 1)
            finally:
                for w in workers:
                    w.stop()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
