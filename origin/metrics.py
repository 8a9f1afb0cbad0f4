"""Prometheus metrics of the origin.

The metric objects are module globals on purpose: prometheus_client registers them once per
process (a second create_app in tests must not register them twice), and under gunicorn with
PROMETHEUS_MULTIPROC_DIR set each worker writes its values to that directory, which `render()`
aggregates. Gunicorn's config should call `child_exit` below when a worker exits.
"""
from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)

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
MODEL_LOAD = Gauge("ocr_model_load_seconds", "Time to load the recognizer at worker start",
                   multiprocess_mode="max")


def render() -> tuple[bytes, str]:
    """Exposition text for /metrics: this process, or all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def child_exit(server, worker) -> None:  # gunicorn hook signature
    """gunicorn `child_exit` hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
