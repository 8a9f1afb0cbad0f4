"""Session fixtures for end-to-end tests: real redis-server, moto S3, gunicorn and nginx.

Every server runs in its own temp dir on a free loopback port and is stopped at session end.
Servers start once per session (the origin loads the model, which costs seconds per worker);
tests that stop a server restart it before they return.
"""
from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import MotoS3Server, NginxServer, OriginServer, RedisServer, WorkerProcess

logger = logging.getLogger(__name__)

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/e2e as e2e (select or deselect with `-m`)."""
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


# ---------------------------------------------------------------- nginx against a scripted stub
@pytest.fixture(scope="session")
def stub_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginServer]:
    workdir = tmp_path_factory.mktemp("stub-origin")
    server = OriginServer(workdir, {"OCR_STUB_STATE_DIR": str(workdir)}, app="tests.e2e.stub_origin:app",
                          workers=2, start_timeout=30)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stub_nginx(tmp_path_factory: pytest.TempPathFactory, stub_origin: OriginServer) -> Iterator[NginxServer]:
    server = NginxServer(tmp_path_factory.mktemp("stub-nginx"), upstream=stub_origin.address)
    server.start()
    yield server
    server.stop()


# ---------------------------------------------------------------- the real stack
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    server = MotoS3Server(bucket="ocr-e2e")
    server.start()
    yield server
    server.stop()


MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # small, so the 413 test sends little; same value on both sides


@pytest.fixture(scope="session")
def origin_env(redis_server: RedisServer, s3_server: MotoS3Server) -> dict[str, str]:
    """What every origin and worker of the e2e deployment shares: Redis, S3, the key secret."""
    return {
        **s3_server.env,
        "OCR_REDIS_URL": redis_server.url,
        "OCR_STORAGE_URL": f"s3://{s3_server.bucket}/results",
        "OCR_SECRET": secrets.token_hex(32),
        "OCR_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "OCR_LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="session")
def worker(tmp_path_factory: pytest.TempPathFactory, origin_env: dict[str, str]) -> Iterator[WorkerProcess]:
    """One real recognition worker (`ocr-origin worker`): the only process that loads the model."""
    server = WorkerProcess(tmp_path_factory.mktemp("worker"), origin_env, name="e2e-worker-1")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory, origin_env: dict[str, str],
           worker: WorkerProcess) -> Iterator[OriginServer]:
    """The real origin (origin.wsgi:app): Redis index + S3 storage through moto's HTTP server,
    recognition by the queue worker."""
    workdir = tmp_path_factory.mktemp("origin")
    env = dict(origin_env)
    # 2 gunicorn workers: concurrency is real (cache-lock test).
    server = OriginServer(workdir, env, workers=2, ready_path="/readyz")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory, origin: OriginServer) -> Iterator[NginxServer]:
    server = NginxServer(tmp_path_factory.mktemp("nginx"), upstream=origin.address,
                         max_upload_bytes=MAX_UPLOAD_BYTES)
    server.start()
    yield server
    server.stop()
