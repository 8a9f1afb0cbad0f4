"""gunicorn settings for the ocr-origin (used by `make run`, `ocr-origin serve`, tests, Docker).

Command-line flags override these (`--bind`, `--workers`, log files), so one file serves every
way of starting the origin. Values come from the environment where an operator may tune them.
"""
from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

# Where to listen; make run/serve pass --bind, docker-compose relies on this default.
bind = os.environ.get("OCR_BIND", f"127.0.0.1:{os.environ.get('OCR_ORIGIN_PORT', '8000')}")
# Sync workers: recognition is CPU-bound, one request per process, torch at 1 intra-op thread
# (OCR_TORCH_THREADS=1) — NOTES.md: 2 spinning OpenMP threads per worker collapse under load.
# Default: one worker per core (at least 2 so a slow upload never blocks /results/ misses).
workers = int(os.environ.get("OCR_WORKERS", max(2, os.cpu_count() or 1)))
worker_class = "sync"
# A large page plus a single-flight wait may take tens of seconds; nginx gives up at 120 s.
timeout = int(os.environ.get("OCR_WORKER_TIMEOUT", "120"))
graceful_timeout = 30
# nginx in front keeps no connections to sync workers (they always close); keep it small.
keepalive = 2
# Recycle workers now and then to bound slow leaks (jitter so they do not restart together).
max_requests = int(os.environ.get("OCR_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
# Each worker loads the model itself after fork: torch's thread pools do not survive fork well.
preload_app = False
# gunicorn >= 24 opens a control socket at one fixed path per user (~/.gunicorn/gunicorn.ctl):
# several masters on one host (make run + tests + bench) would fight over it. Not used here.
control_socket_disable = True
# nginx on the same host or compose network sets X-Forwarded-*; trust it there only.
forwarded_allow_ips = os.environ.get("OCR_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Logs to stderr unless the launcher passes files. The access line carries nginx's request id
# and the duration in microseconds; e2e tests count origin hits with `"GET /path `.
accesslog = os.environ.get("OCR_ACCESS_LOG", "-")
errorlog = os.environ.get("OCR_ERROR_LOG", "-")
loglevel = os.environ.get("OCR_LOG_LEVEL", "INFO").lower()
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(D)sus rid=%({x-request-id}i)s'


def child_exit(server, worker) -> None:  # noqa: ANN001 (gunicorn hook signature)
    """Tell prometheus_client's multiprocess collector that a worker is gone."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:  # metrics are optional for the server itself
        return
    multiprocess.mark_process_dead(worker.pid)
