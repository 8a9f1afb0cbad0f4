"""Prometheus metrics of the origin.

The metric objects are module globals on purpose: prometheus_client registers them once per
process (a second create_app in tests must not register them twice), and under gunicorn with
PROMETHEUS_MULTIPROC_DIR set each worker writes its values to that directory, which `render()`
aggregates. Gunicorn's config should call `child_exit` below when a worker exits.
"""
from __future__ import annotations

import os
from typing import Iterator, Mapping

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)
from prometheus_client.core import GaugeMetricFamily

UPLOADS = Counter("ocr_uploads_total", "Uploads accepted by POST /ocr (decoded successfully)")
REJECTED = Counter("ocr_uploads_rejected_total", "Uploads refused with a 4xx", ["code"])
DEDUP = Counter("ocr_dedup_total", "Upload outcomes of the dedup layer: result HIT or MISS, and "
                "how a HIT was found (exact key, verified near duplicate, waited for single flight)",
                ["result", "match"])
NEAR_REJECTED = Counter("ocr_near_duplicate_rejected_total",
                        "pHash candidates the verifier refused (same layout, different content)")
INFERENCE = Histogram("ocr_inference_seconds", "Time in predictor.read() per MISS",
                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
STORAGE_ERRORS = Counter("ocr_storage_errors_total", "Result store failures", ["op"])
REDIS_ERRORS = Counter("ocr_redis_errors_total", "Redis index failures (dedup skipped)", ["op"])
SERVER_ERRORS = Counter("ocr_server_errors_total", "Responses with a 5xx status, by error code "
                        "(internal_error = an unhandled exception: a bug)", ["code"])
RATE_LIMITED = Counter("ocr_rate_limited_total", "Uploads refused with 429 (client over its rate)")
AUTH_FAILED = Counter("ocr_auth_failed_total", "Uploads refused with 401 (no or unknown API key)")
LIMITER_ERRORS = Counter("ocr_rate_limiter_errors_total", "Rate-limit checks that could not reach "
                         "Redis (the upload was let through)")
JOBS_ENQUEUED = Counter("ocr_jobs_enqueued_total", "Recognition jobs created by uploads (joins not counted)")
SYNC_WAIT = Histogram("ocr_sync_wait_seconds", "Time an upload waited for its job (OCR_SYNC_WAIT_S at most)",
                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
JOB_DURATION = Histogram("ocr_job_seconds", "Time a worker spent on one recognition job, by outcome",
                         ["outcome"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100))
MODEL_LOAD = Gauge("ocr_model_load_seconds", "Time to load the recognizer at worker start",
                   multiprocess_mode="max")


class QueueCollector:
    """The recognition queue as gauges, read from Redis at scrape time (the same figures on every
    origin: they describe the shared queue, not this process)."""

    def __init__(self, stats: Mapping[str, int]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("ocr_queue_length", "Recognition jobs waiting in the queue",
                                value=self.stats["queued"])
        jobs = GaugeMetricFamily("ocr_jobs", "Recognition jobs by state (failed: kept a day)", labels=["state"])
        for state in ("queued", "running", "failed"):
            jobs.add_metric([state], self.stats[state])
        yield jobs
        yield GaugeMetricFamily("ocr_queue_workers", "Recognition workers registered on the queue",
                                value=self.stats["workers"])


def render(queue_stats: Mapping[str, int] | None = None) -> tuple[bytes, str]:
    """Exposition text for /metrics: this process, or all processes of this host in
    multiprocess mode (gunicorn workers and recognition workers), plus the queue's gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    if queue_stats is not None:
        queue_registry = CollectorRegistry()
        queue_registry.register(QueueCollector(queue_stats))  # type: ignore[arg-type]
        body += generate_latest(queue_registry)
    return body, CONTENT_TYPE_LATEST


def child_exit(server, worker) -> None:  # gunicorn hook signature
    """gunicorn `child_exit` hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
