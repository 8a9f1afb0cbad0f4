"""Prometheus /metrics of the real origin under gunicorn with two workers, through failures.

Its own origin (file storage in a temp dir) and redis-server, so stopping them here never
disturbs the session stack of test_flow.py.
"""
from __future__ import annotations

import re
import secrets
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.e2e.test_flow import render_line, upload
from tests.servers import OriginServer, RedisServer, WorkerProcess

WORKERS = 2


@pytest.fixture(scope="module")
def metrics_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("metrics-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics-results") / "results"


@pytest.fixture(scope="module")
def metrics_origin(tmp_path_factory: pytest.TempPathFactory, metrics_redis: RedisServer,
                   results_dir: Path) -> Iterator[OriginServer]:
    env = {
        "OCR_REDIS_URL": metrics_redis.url,
        "OCR_STORAGE_URL": f"file://{results_dir}",
        "OCR_SECRET": secrets.token_hex(32),
    }
    server = OriginServer(tmp_path_factory.mktemp("metrics-origin"), env, workers=WORKERS, ready_path="/readyz")
    server.start()
    # The recognition worker writes its metrics next to the gunicorn workers' (same host): the
    # origin's /metrics reports the inference and job figures too.
    worker = WorkerProcess(tmp_path_factory.mktemp("metrics-worker"),
                           {**env, "PROMETHEUS_MULTIPROC_DIR": str(server.workdir / "prometheus")},
                           name="metrics-worker")
    worker.start()
    yield server
    worker.stop()
    server.stop()


def samples(origin: OriginServer) -> dict[str, float]:
    """{'name{labels}': value} from one /metrics answer (whichever worker gives it)."""
    r = requests.get(origin.url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", r.text, re.M)}


def total(s: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    out = 0.0
    for sample, value in s.items():
        base, _, rest = sample.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            out += value
    return out


def fresh_png() -> bytes:
    return render_line(f"Parcel {uuid.uuid4().int % 10**8:08d} delivered")


def test_counters_are_those_of_all_workers(metrics_origin: OriginServer) -> None:
    base = samples(metrics_origin)
    # Concurrent uploads: while one worker recognises, the other takes the next one.
    with ThreadPoolExecutor(WORKERS * 2) as pool:
        answers = list(pool.map(lambda png: upload(metrics_origin.url, png),
                                [fresh_png() for _ in range(WORKERS * 2)]))
    assert [a.headers["X-OCR-Cache"] for a in answers] == ["MISS"] * (WORKERS * 2)
    again = upload(metrics_origin.url, render_line("Parcel dedup check"))
    assert upload(metrics_origin.url, render_line("Parcel dedup check")).headers["X-OCR-Cache"] == "HIT"
    assert again.headers["X-OCR-Cache"] == "MISS"
    n = WORKERS * 2 + 1
    # Every scrape, whichever worker answers it, reports the totals of all workers.
    for _ in range(6):
        s = samples(metrics_origin)
        assert total(s, "ocr_uploads_total") - total(base, "ocr_uploads_total") == n + 1
        assert total(s, "ocr_dedup_total", result="miss") - total(base, "ocr_dedup_total", result="miss") == n
        assert total(s, "ocr_dedup_total", result="hit") - total(base, "ocr_dedup_total", result="hit") == 1
        assert total(s, "ocr_inference_seconds_count") - total(base, "ocr_inference_seconds_count") == n
        assert total(s, "ocr_inference_seconds_bucket", le="+Inf") == total(s, "ocr_inference_seconds_count")
        assert total(s, "ocr_inference_seconds_sum") > 0
        assert s["ocr_model_load_seconds"] > 0  # gauge, max over the workers


def test_redis_outage_is_counted_and_new_images_get_503(metrics_origin: OriginServer,
                                                        metrics_redis: RedisServer) -> None:
    before = total(samples(metrics_origin), "ocr_redis_errors_total")
    metrics_redis.stop()
    try:
        r = upload(metrics_origin.url, fresh_png())
        # no queue: a clean, retryable 503 (stored results stay readable: test_storage_outage...)
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_unavailable"
        assert r.headers["Retry-After"]
        ready = requests.get(metrics_origin.url + "/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["checks"]["redis"].startswith("degraded")
        assert total(samples(metrics_origin), "ocr_redis_errors_total") > before
    finally:
        metrics_redis.start()
    # the worker survives the outage and takes jobs again (and re-announces its model)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = upload(metrics_origin.url, fresh_png())
        if r.status_code == 303:
            break
        time.sleep(1)
    assert r.status_code == 303, r.text


def test_storage_outage_is_counted_and_answers_503(metrics_origin: OriginServer, results_dir: Path) -> None:
    stored = upload(metrics_origin.url, fresh_png())
    assert stored.status_code == 303
    before = total(samples(metrics_origin), "ocr_storage_errors_total")
    moved = results_dir.with_name("results.moved")
    results_dir.rename(moved)
    results_dir.write_text("not a directory")  # every read and write under it now fails
    try:
        r = upload(metrics_origin.url, fresh_png())
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
        got = requests.get(metrics_origin.url + stored.headers["Location"], timeout=10)
        assert got.status_code == 503 and got.headers["Cache-Control"] == "no-store"
        assert requests.get(metrics_origin.url + "/readyz", timeout=10).status_code == 503
        s = samples(metrics_origin)
        assert total(s, "ocr_storage_errors_total") - before >= 3
        assert total(s, "ocr_storage_errors_total", op="get") >= 1
    finally:
        results_dir.unlink()
        shutil.move(moved, results_dir)
    assert requests.get(metrics_origin.url + stored.headers["Location"], timeout=10).status_code == 200


def _gunicorn_workers(origin: OriginServer) -> set[int]:
    assert origin.proc is not None
    master = origin.proc.pid
    return {int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def test_a_dead_gunicorn_worker_is_counted_and_replaced(metrics_origin: OriginServer) -> None:
    """Issue 16 item 10: worker exits (recycling, crashes, timeouts) were invisible in /metrics.
    The master counts each exit (deploy/gunicorn.conf.py child_exit) and starts another worker."""
    import os
    import signal

    before = total(samples(metrics_origin), "ocr_worker_exits_total")
    workers = _gunicorn_workers(metrics_origin)
    assert len(workers) == WORKERS
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _gunicorn_workers(metrics_origin)
        if victim not in now and len(now) == WORKERS:
            break
        time.sleep(0.2)
    assert victim not in now and len(now) == WORKERS, now  # replaced
    deadline = time.monotonic() + 30
    while total(samples(metrics_origin), "ocr_worker_exits_total") < before + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert total(samples(metrics_origin), "ocr_worker_exits_total") == before + 1
