"""gunicorn settings for the ocr-origin (used by `make run`, `ocr-origin serve`, tests, Docker).

Command-line flags override these (`--bind`, `--workers`, log files), so one file serves every
way of starting the origin. Values come from the environment where an operator may tune them.
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import signal
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def _settings():  # noqa: ANN202 - the module loaded by path
    """origin/settings.py by path (the master must not import Flask; see render.load_settings)."""
    name = "ocr_origin_settings"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "origin/settings.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_opt = _settings().get

# Where to listen; make run/serve pass --bind, docker-compose relies on this default.
bind = _opt("OCR_BIND")
# Threaded workers: the origin no longer runs the model (queue workers do, origin/worker.py); a
# request mostly waits on Redis, S3 or its job (up to OCR_SYNC_WAIT_S), so each process serves
# OCR_WEB_THREADS requests at once and /healthz and result GETs keep answering while uploads wait.
workers = _opt("OCR_WORKERS")
worker_class = "gthread"
threads = _opt("OCR_WEB_THREADS")
# An upload waits for its job at most OCR_SYNC_WAIT_S (then 202); this only catches a hang.
timeout = _opt("OCR_WORKER_TIMEOUT")
graceful_timeout = 30
# Idle keep-alive connections from nginx are closed after this many seconds.
keepalive = 2
# Recycle workers now and then to bound slow leaks. The jitter spreads recycling: two workers
# sharing the load reach max_requests together and would restart in the same second.
max_requests = _opt("OCR_MAX_REQUESTS")
max_requests_jitter = _opt("OCR_MAX_REQUESTS_JITTER")
# Each worker builds its app after fork (connection pools are per process).
preload_app = False
# gunicorn >= 24 opens a control socket at one fixed path per user (~/.gunicorn/gunicorn.ctl):
# several masters on one host (make run + tests + bench) would fight over it. Not used here.
control_socket_disable = True
# nginx on the same host or compose network sets X-Forwarded-*; trust it there only.
forwarded_allow_ips = _opt("OCR_FORWARDED_ALLOW_IPS")

# Logs to stderr unless the launcher passes files. The access line carries nginx's request id
# and the duration in microseconds; e2e tests count origin hits with `"GET /path `.
accesslog = _opt("OCR_ACCESS_LOG")
errorlog = _opt("OCR_ERROR_LOG")
loglevel = _opt("OCR_LOG_LEVEL").lower()
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(D)sus rid=%({x-request-id}i)s'


# gunicorn answers requests it cannot parse (bad request line, headers too large, unsupported
# transfer encoding) itself, with an HTML page; clients must see the origin's one JSON error shape.
_ERROR_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 413: "payload_too_large",
                414: "uri_too_long", 431: "headers_too_large", 500: "internal_error",
                501: "not_implemented", 503: "unavailable"}


def _write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:  # noqa: ANN001
    import json

    from gunicorn import util

    body = json.dumps({"error": {"status": status_int, "code": _ERROR_CODES.get(status_int, "error"),
                                 "message": mesg or reason}, "request_id": None}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nCache-Control: no-store\r\n"
            f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


def _json_errors() -> None:
    try:
        from gunicorn import util
    except ImportError:  # loaded outside gunicorn (tests read the settings)
        return
    util.write_error = _write_json_error  # workers call util.write_error through the module


_json_errors()

PR_SET_PDEATHSIG = 1  # prctl(2)


def post_fork(server, worker) -> None:  # noqa: ANN001 (gunicorn hook signature)
    """A worker dies with its master: after a SIGKILL of the master, orphaned workers would
    otherwise keep the port and serve for up to `timeout` seconds, unseen by `make stop`."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker's own parent check remains
        return
    if os.getppid() != server.pid:  # the master died between fork and prctl
        os.kill(os.getpid(), signal.SIGTERM)


def child_exit(server, worker) -> None:  # noqa: ANN001 (gunicorn hook signature)
    """Count the exit (recycling, crash, timeout) and tell prometheus_client's multiprocess
    collector that the worker is gone."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import Counter, multiprocess
    except ImportError:  # metrics are optional for the server itself
        return
    multiprocess.mark_process_dead(worker.pid)
    global _WORKER_EXITS
    if _WORKER_EXITS is None:  # created in the master only (workers never call this hook)
        _WORKER_EXITS = Counter("ocr_worker_exits_total",
                                "gunicorn workers that exited (recycled after max_requests, crashed "
                                "or timed out); the master starts a new one each time")
    _WORKER_EXITS.inc()


_WORKER_EXITS = None
