"""Real servers for tests: each runs from its own temp dir on a free loopback port.

Shared by unit and e2e tests. A missing binary fails with a message that says how to install it
(`make test` installs them, so CI never skips).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import pytest

logger = logging.getLogger(__name__)


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not path:
        pytest.fail(f"{name} not found: install it with `apt-get install -y {package}` (or run `make test`)")
    return path


class RedisServer:
    """A real redis-server with no persistence, in its own directory, on a free port."""

    def __init__(self, workdir: Path, port: int | None = None, *, password: str | None = None) -> None:
        self.binary = require_binary("redis-server", "redis-server")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password  # requirepass: clients must AUTH (the URL's `:password@`)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        auth = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), *auth],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# --------------------------------------------------------------------------------------------
# nginx, moto S3 and the gunicorn origin (e2e). Same conventions as RedisServer: own dir, free
# port, start() returns self, stop() is idempotent.
# --------------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = REPO_ROOT / "deploy" / "gunicorn.conf.py"


def load_nginx_render() -> ModuleType:
    """Import deploy/nginx/render.py (not a package: it must run before the venv exists)."""
    path = REPO_ROOT / "deploy" / "nginx" / "render.py"
    spec = importlib.util.spec_from_file_location("ocr_nginx_render", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


class NginxServer:
    """A real nginx rendered from deploy/nginx/nginx.conf.template, in its own dir, on a free port."""

    def __init__(self, workdir: Path, upstream: str, *, port: int | None = None,
                 max_upload_bytes: int = 20 * 1024 * 1024) -> None:
        self.binary = require_binary("nginx", "nginx-light")
        self.render = load_nginx_render()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.upstream = upstream
        self.max_upload_bytes = max_upload_bytes
        self.conf = self.workdir / "nginx.conf"
        self.log_dir = self.workdir / "log"
        self.cache_dir = self.workdir / "cache"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.log_dir / "access.log"

    def _args(self) -> list[str]:
        return ["-p", str(self.workdir), "-c", str(self.conf), "-e", str(self.workdir / "error.log")]

    def start(self) -> "NginxServer":
        values = self.render.values_for(
            self.workdir, listen=f"127.0.0.1:{self.port}", upstream=self.upstream,
            max_upload_bytes=self.max_upload_bytes, log_dir=self.log_dir, cache_dir=self.cache_dir,
            cache_max_size="256m",
        )
        self.render.write_config(self.conf, values)
        # Fail with nginx's own words when the rendered config is invalid.
        check = subprocess.run([self.binary, "-t", *self._args()], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed for {self.conf}:\n{check.stderr}")
        self.proc = subprocess.Popen([self.binary, *self._args()],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, timeout=10)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"nginx did not start:\n{_tail(self.workdir / 'error.log')}"
                               f"\n{_tail(self.log_dir / 'error.log')}") from None
        return self

    def access_entries(self) -> list[dict[str, Any]]:
        """The JSON-lines access log parsed (nginx writes each line when a request ends)."""
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class MotoS3Server:
    """moto's real S3 HTTP endpoint (ThreadedMotoServer) on a free port, with one bucket."""

    ACCESS_KEY = "testing"
    SECRET_KEY = "testing"
    REGION = "us-east-1"

    def __init__(self, bucket: str = "ocr-results", port: int | None = None) -> None:
        self.bucket = bucket
        self.port = port or free_port()
        self.server: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process (the origin) that talks to this endpoint."""
        return {
            "OCR_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_DEFAULT_REGION": self.REGION,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.REGION,
                            aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY)

    def start(self) -> "MotoS3Server":
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:  # flask-cors comes with the extra
            pytest.fail(f"moto's server needs `pip install 'moto[server]'` (or run `make test`): {exc}")
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_for_port(self.port)
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = None


class MotoS3Process(MotoS3Server):
    """moto's S3 HTTP server in its own process (`python -m moto.server`): for tests that time
    requests from the test process, where a server thread would share the test's GIL."""

    def __init__(self, workdir: Path, bucket: str = "ocr-results", port: int | None = None) -> None:
        super().__init__(bucket, port)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "MotoS3Process":
        with (self.workdir / "moto.log").open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=60)
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class OriginServer:
    """gunicorn serving a WSGI app (default: the real `origin.wsgi:app`) as a subprocess.

    Uses deploy/gunicorn.conf.py like `make run`, so hooks and log formats are the deployed ones.
    `env` adds/overrides environment variables (OCR_REDIS_URL, OCR_STORAGE_URL, ...). Its
    access log (one line per request that reached the origin) lets tests count origin hits.
    """

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None, *,
                 app: str = "origin.wsgi:app", workers: int = 1, port: int | None = None,
                 ready_path: str = "/healthz", start_timeout: float = 180.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.app = app
        self.workers = workers
        self.port = port or free_port()
        self.ready_path = ready_path
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    @property
    def app_log(self) -> Path:
        """The workers' stderr: the origin's own structured log lines (origin.logs.FORMAT)."""
        return self.workdir / "app.log"

    def app_log_lines(self) -> list[str]:
        return self.app_log.read_text(errors="replace").splitlines() if self.app_log.exists() else []

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    def count_requests(self, method: str, path: str) -> int:
        """How many `METHOD path` requests reached this origin (from its access log)."""
        needle = f'"{method} {path} '
        return sum(needle in line for line in self.access_lines())

    def settled_count(self, method: str, path: str, at_least: int, timeout: float = 5.0) -> int:
        """count_requests() once it reaches `at_least` (gunicorn logs a request after answering
        it, so a client can see the answer before the line exists), plus a moment for any
        extra line to land; the count as it is after `timeout` otherwise."""
        deadline = time.monotonic() + timeout
        while self.count_requests(method, path) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        return self.count_requests(method, path)

    def start(self) -> "OriginServer":
        import urllib.error
        import urllib.request

        prom_dir = self.workdir / "prometheus"
        if prom_dir.exists():  # stale multiprocess files from a previous run skew counters
            for f in prom_dir.iterdir():
                f.unlink()
        prom_dir.mkdir(exist_ok=True)
        env = {**os.environ, "OCR_TORCH_THREADS": "1", "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
               "PYTHONUNBUFFERED": "1", **self.env}
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), self.app,
               "--bind", self.address, "--workers", str(self.workers),
               "--access-logfile", str(self.access_log), "--error-logfile", str(self.error_log)]
        with self.app_log.open("ab") as app_log:  # appended to across restarts
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env,
                                         stdout=subprocess.DEVNULL, stderr=app_log)
        # Ready when the app answers (model loaded), not merely when the port is bound.
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{_tail(self.error_log)}"
                                   f"\n{_tail(self.app_log)}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"origin not ready after {self.start_timeout}s:\n{_tail(self.error_log)}"
                           f"\n{_tail(self.app_log)}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # gunicorn: SIGTERM = graceful shutdown of the workers
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class WorkerProcess:
    """A real recognition worker (`ocr-origin worker`, RQ's SimpleWorker loop) as a subprocess.

    Ready once it has loaded the model and registered with RQ on the shared Redis. `env` is the
    origin's environment (Redis, storage, secret), so its results land where the origins look."""

    def __init__(self, workdir: Path, env: Mapping[str, str], *, name: str,
                 start_timeout: float = 180.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        self.name = name
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def jobs_done(self) -> int:
        """Jobs this worker finished (origin/worker.py logs one `job done` line per job)."""
        return sum(" job done key=" in line for line in self.log_lines())

    def start(self) -> "WorkerProcess":
        import redis

        env = {**os.environ, "OCR_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", **self.env}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "origin.cli", "worker", "--name", self.name],
                                         cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.env["OCR_REDIS_URL"])
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{_tail(self.log)}")
                if client.exists(f"rq:worker:{self.name}"):  # RQ registers a worker under this key
                    return self
                time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"worker not ready after {self.start_timeout}s:\n{_tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-job without any cleanup."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # RQ: warm shutdown (finish the current job)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
