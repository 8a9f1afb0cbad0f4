"""One contract suite over both result stores."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cache.errors import InvalidKey, StorageUnavailable
from cache.store import RESULT, SIGNATURE, THUMBNAIL, FileResultStore, S3ResultStore, from_url

KEY = "abcd" + "e" * 28
KEY2 = "abcd" + "f" * 28


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "file":
        return FileResultStore(tmp_path / "results")
    bucket = request.getfixturevalue("s3_bucket")
    return S3ResultStore(bucket, "results/v1")


def test_absent_is_none(store) -> None:
    assert store.get(KEY, RESULT) is None
    assert store.exists(KEY, RESULT) is False


def test_put_get_roundtrip(store) -> None:
    assert store.put(KEY, RESULT, b'{"text":"hi"}', content_type="application/json") is True
    assert store.get(KEY, RESULT) == b'{"text":"hi"}'
    assert store.exists(KEY, RESULT)
    assert store.get(KEY, THUMBNAIL) is None


def test_put_is_write_once(store) -> None:
    assert store.put(KEY, RESULT, b"first", content_type="application/json")
    assert store.put(KEY, RESULT, b"second", content_type="application/json") is False
    assert store.get(KEY, RESULT) == b"first"


def test_concurrent_puts_one_winner(store) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def put(i: int) -> None:
        barrier.wait()
        results.append(store.put(KEY, RESULT, f"body-{i}".encode() * 1000, content_type="text/plain"))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    body = store.get(KEY, RESULT)
    assert body is not None and len(set(body.split(b"-"))) <= 9 and body == body[:len(body) // 1000] * 1000


def test_iter_keys_lists_only_complete_results(store) -> None:
    store.put(KEY, SIGNATURE, b"png", content_type="image/png")  # no result.json yet: incomplete
    store.put(KEY2, SIGNATURE, b"png", content_type="image/png")
    store.put(KEY2, RESULT, b"{}", content_type="application/json")
    assert list(store.iter_keys()) == [KEY2]


def test_invalid_key_never_reaches_backend(store) -> None:
    for bad in ("../../etc/passwd", "A" * 32, ""):
        with pytest.raises(InvalidKey):
            store.get(bad, RESULT)
        with pytest.raises(InvalidKey):
            store.put(bad, RESULT, b"x", content_type="text/plain")
    with pytest.raises(ValueError):
        store.get(KEY, "other.txt")


def test_ping(store) -> None:
    store.ping()


def test_file_store_leaves_no_temp_files(tmp_path: Path) -> None:
    store = FileResultStore(tmp_path)
    store.put(KEY, RESULT, b"x", content_type="application/json")
    store.put(KEY, RESULT, b"y", content_type="application/json")
    assert sorted(os.listdir(tmp_path / KEY)) == [RESULT]


def test_file_store_outage_is_storage_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a dir")
    store = FileResultStore(blocker)
    with pytest.raises(StorageUnavailable):
        store.put(KEY, RESULT, b"x", content_type="application/json")
    with pytest.raises(StorageUnavailable):
        store.ping()


def test_s3_outage_is_storage_unavailable(aws_env: None) -> None:
    from tests.servers import free_port

    store = S3ResultStore("bucket", "p", endpoint_url=f"http://127.0.0.1:{free_port()}")
    for call in (lambda: store.get(KEY, RESULT), lambda: store.exists(KEY, RESULT),
                 lambda: store.put(KEY, RESULT, b"x", content_type="text/plain"), store.ping,
                 lambda: list(store.iter_keys())):
        with pytest.raises(StorageUnavailable):
            call()


def test_s3_missing_bucket_is_unavailable_not_absent(s3_bucket: str) -> None:
    store = S3ResultStore("no-such-bucket", "")
    with pytest.raises(StorageUnavailable):
        store.get(KEY, RESULT)


def test_s3_layout_and_content_type(s3_bucket: str) -> None:
    import boto3

    store = S3ResultStore(s3_bucket, "/results/v1/")
    store.put(KEY, RESULT, b"{}", content_type="application/json; charset=utf-8")
    head = boto3.client("s3").head_object(Bucket=s3_bucket, Key=f"results/v1/{KEY}/{RESULT}")
    assert head["ContentType"] == "application/json; charset=utf-8"
    assert repr(store) == "<S3ResultStore s3://ocr-results/results/v1>"


def test_from_url() -> None:
    assert isinstance(from_url("file://var/results"), FileResultStore)
    assert from_url("file://var/results").root == Path("var/results")
    assert from_url("file:///srv/results").root == Path("/srv/results")
    s3 = from_url("s3://bucket/some/prefix", endpoint_url="http://127.0.0.1:9")
    assert isinstance(s3, S3ResultStore) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    assert s3.endpoint_url == "http://127.0.0.1:9"
    for bad in ("http://x", "s3://", "file://", "var/results"):
        with pytest.raises(ValueError):
            from_url(bad)
