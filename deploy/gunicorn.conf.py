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
# Threaded workers: the origin no longer runs the model (queue workers do, origin/worker.py); a
# request mostly waits on Redis, S3 or its job (up to OCR_SYNC_WAIT_S), so each process serves
# OCR_WEB_THREADS requests at once and /healthz and result GETs keep answering while uploads wait.
workers = int(os.environ.get("OCR_WORKERS", max(2, os.cpu_count() or 1)))
worker_class = "gthread"
threads = int(os.environ.get("OCR_WEB_THREADS", "16"))
# An upload waits for its job at most OCR_SYNC_WAIT_S (then 202); this only catches a hang.
timeout = int(os.environ.get("OCR_WORKER_TIMEOUT", "120"))
graceful_timeout = 30
# Idle keep-alive connections from nginx are closed after this many seconds.
keepalive = 2
# Recycle workers now and then to bound slow leaks (jitter so they do not restart together).
max_requests = int(os.environ.get("OCR_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
# Each worker builds its app after fork (connection pools are per process).
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
