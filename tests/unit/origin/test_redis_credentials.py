"""A Redis that requires a password (`OCR_REDIS_URL=redis://:password@host:port/db`): the index,
the job queue and the rate limiter authenticate with it, and the password never shows in the
logs, /readyz, doctor's report or an error answer (issue 16 item 8)."""
from __future__ import annotations

import json
import logging
import secrets
from dataclasses import replace
from typing import Iterator

import pytest
import redis

from cache import redis_keys
from origin import cli, create_app, doctor
from origin.settings import redact_url
from tests.servers import RedisServer
from tests.unit.cache.corpus import encode

from .helpers import page, png, upload

# Unique per run, so a leak anywhere is found by a plain substring search.
PASSWORD = "pw-" + secrets.token_hex(12)
WRONG = "wrong-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), password=PASSWORD).start()
    yield server
    server.stop()


def _wrong_url(server: RedisServer) -> str:
    return f"redis://:{WRONG}@127.0.0.1:{server.port}/0"


def _leaks(*texts: str) -> list[str]:
    return [t for t in texts if PASSWORD in t or WRONG in t]


def test_redact_url() -> None:
    assert redact_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("redis://user:s3cret@h:6379/0") == "redis://user:***@h:6379/0"
    assert redact_url("rediss://:p@ss@h:6380/1") == "rediss://:***@h:6380/1"  # '@' in the password
    assert redact_url("redis://s3cret@h/0") == "redis://***@h/0"  # a password where the user goes
    assert redact_url("redis://h:6379/0?password=s3cret&db=2") == "redis://h:6379/0?password=***&db=2"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("") == ""


def test_uploads_dedup_and_limits_work_through_a_password(locked_redis: RedisServer, settings, predictor,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(redis.AuthenticationError):  # the server does require the password
        redis.Redis(port=locked_redis.port).ping()
    conf = replace(settings, redis_url=locked_redis.url)
    client = create_app(conf, predictor=predictor).test_client()
    img = page("password protected 2026")
    first = upload(client, png(img))
    assert first.status_code == 303 and first.headers["X-OCR-Cache"] == "MISS", first.get_data(as_text=True)
    near = upload(client, encode(img, "JPEG", quality=80))  # found through the index in Redis
    assert near.headers["X-OCR-Match"] == "near" and near.headers["Location"] == first.headers["Location"]
    assert predictor.calls == 1
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"]["redis"] == "ok"
    # each part really used this Redis: the job queue (RQ), the index, the limiter, bytes -> key
    r = redis.Redis.from_url(locked_redis.url)
    try:
        for pattern in ("rq:job:*", *(redis_keys.PREFIX + p for p in ("b:*", "rate:*", "bytes:*"))):
            assert r.keys(pattern), pattern
    finally:
        r.flushdb()
        r.close()
    assert not _leaks(repr(conf), ready.get_data(as_text=True), *(rec.getMessage() for rec in caplog.records))


def test_a_wrong_password_is_never_echoed(locked_redis: RedisServer, settings, predictor,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = create_app(replace(settings, redis_url=_wrong_url(locked_redis)), predictor=predictor).test_client()
    resp = upload(client, png(page("refused credentials")))
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "queue_unavailable"
    ready = client.get("/readyz")
    assert ready.get_json()["checks"]["redis"].startswith("degraded")
    # the failures were logged (so the search below looked at something), without the password
    messages = [rec.getMessage() for rec in caplog.records]
    assert any("redis" in m.lower() and "fail" in m.lower() or "unavailable" in m for m in messages)
    assert not _leaks(resp.get_data(as_text=True), ready.get_data(as_text=True), *messages)


def test_doctor_checks_a_password_url_and_never_prints_it(locked_redis: RedisServer,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    good = doctor.check_redis({"OCR_REDIS_URL": locked_redis.url})
    # WARN: this test Redis has no persistence
    assert good.status in (doctor.OK, doctor.WARN) and "answers" in good.detail
    assert f"redis://:***@127.0.0.1:{locked_redis.port}/0" in good.detail
    bad = doctor.check_redis({"OCR_REDIS_URL": _wrong_url(locked_redis)})
    assert bad.status == doctor.FAIL and "refused our credentials" in bad.detail
    assert not _leaks(good.detail, bad.detail)
    monkeypatch.setenv("OCR_REDIS_URL", _wrong_url(locked_redis))
    cli.main(["doctor", "--json", "--no-model-load"])
    out = capsys.readouterr()
    report = {c["name"]: c for c in json.loads(out.out)["checks"]}
    assert report["redis"]["status"] == "FAIL"
    assert not _leaks(out.out, out.err)
