from __future__ import annotations

import io
import json

import pytest

from cache.__main__ import main
from cache import redis_keys
from cache.fingerprint import fine_hash
from cache.index import RedisResultIndex
from cache.reindex import reindex
from cache.store import FileResultStore, S3ResultStore

NS = "abcd"


def _put(store, key: str, phash: str, created: str = "2026-01-02T03:04:05.000+00:00") -> None:
    store.put(key, "signature.png", b"png", content_type="image/png")
    store.put(key, "result.json", json.dumps({"key": key, "phash": phash, "created_at": created}).encode(),
              content_type="application/json")


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return FileResultStore(tmp_path / "results")
    return S3ResultStore(request.getfixturevalue("s3_bucket"), "r")


def test_reindex_rebuilds_index(store, redis_url, redis_client) -> None:
    index = RedisResultIndex.from_url(redis_url)
    _put(store, NS + "a" * 28, "00000000000000ff")
    _put(store, NS + "b" * 28, "00000000000000fe")
    _put(store, NS + "c" * 28, "ff00000000000000")
    store.put(NS + "d" * 28, "signature.png", b"png", content_type="image/png")  # incomplete: skipped
    store.put(NS + "e" * 28, "result.json", b"{not json", content_type="application/json")
    assert index.candidates(NS, 0xFF) == []
    stats = reindex(store, index)
    assert stats["indexed"] == 3 and stats["skipped"] == 1
    assert {c.key for c in index.candidates(NS, 0xFF)} == {NS + "a" * 28, NS + "b" * 28}
    snapshot = sorted(redis_client.keys("*"))
    reindex(store, index)  # idempotent
    assert sorted(redis_client.keys("*")) == snapshot


def test_reindex_clear_drops_stale_entries(tmp_path, redis_url) -> None:
    store = FileResultStore(tmp_path)
    index = RedisResultIndex.from_url(redis_url)
    index.record(NS, NS + "z" * 28, 0xFF, created_at=1.0)  # not in storage
    _put(store, NS + "a" * 28, "00000000000000ff")
    stats = reindex(store, index, clear=True)
    assert stats["cleared"] > 0
    assert [c.key for c in index.candidates(NS, 0xFF)] == [NS + "a" * 28]


def test_cli(tmp_path, redis_url, capsys) -> None:
    store = FileResultStore(tmp_path / "res")
    _put(store, NS + "a" * 28, "00000000000000ff")
    rc = main(["reindex", "--redis-url", redis_url, "--storage-url", f"file://{tmp_path / 'res'}"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["indexed"] == 1
    assert [c.key for c in RedisResultIndex.from_url(redis_url).candidates(NS, 0xFF)] == [NS + "a" * 28]


def test_cli_redis_down_fails_cleanly(tmp_path, capsys) -> None:
    from tests.servers import free_port

    _put(FileResultStore(tmp_path), NS + "a" * 28, "00000000000000ff")
    rc = main(["reindex", "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--storage-url", f"file://{tmp_path}"])
    assert rc == 1 and "reindex failed" in capsys.readouterr().err


def test_reindex_restores_fine_hashes_from_signatures(tmp_path, redis_url, redis_client) -> None:
    from PIL import Image, ImageDraw

    store = FileResultStore(tmp_path)
    page = Image.new("RGB", (300, 80), "white")
    ImageDraw.Draw(page).text((10, 30), "Invoice 2026-0042", fill="black")
    signature = io.BytesIO()
    page.convert("L").save(signature, format="PNG")  # what the worker stores (verify.make_signature)
    key = NS + "a" * 28
    assert store.put(key, "signature.png", signature.getvalue(), content_type="image/png")
    _put(store, key, "00000000000000ff")  # its placeholder signature does not replace ours (write-once)
    reindex(store, RedisResultIndex.from_url(redis_url), clear=True)
    # the same fine hash as the upload itself had: the ranking survives a rebuild
    assert redis_client.hget(redis_keys.fine_hashes(NS), key) == fine_hash(page)
