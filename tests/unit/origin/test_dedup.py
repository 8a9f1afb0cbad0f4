"""Cache correctness through the whole upload flow (issue 4): real Redis, real storage."""
from __future__ import annotations

import random
import threading

import pytest

from cache.keys import model_namespace
from cache.store import FileResultStore, S3ResultStore
from origin import create_app
from tests.servers import free_port
from tests.unit.cache.corpus import encode, one_char_pairs, variants

from .conftest import CountingPredictor
from .helpers import page, png, upload

PAIRS = one_char_pairs(50, seed=99)


def _key(resp) -> str:
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return resp.headers["Location"].rsplit("/", 1)[1]


@pytest.fixture(params=["file", "s3"])
def any_store(request, tmp_path):
    if request.param == "file":
        return FileResultStore(tmp_path / "results")
    return S3ResultStore(request.getfixturevalue("s3_bucket"), "results")


def test_corpus_one_char_pairs_never_share_and_variants_always_do(client, predictor) -> None:
    """50 one-character pairs (ASCII and Chinese, 4+ fonts, 11-30 px) get 100 distinct keys;
    100 re-encodings/resizes/EXIF variants of the first pages all reuse their page's key."""
    rng = random.Random(5)
    keys: dict[str, str] = {}
    for a, b in PAIRS:
        ia, ib = a.render(), b.render()
        keys[a.name] = _key(upload(client, encode(ia, "PNG")))
        # the changed page, uploaded as a JPEG: pHash says "same", the verifier must say no
        resp = upload(client, encode(ib, "JPEG", quality=90))
        assert resp.headers["X-OCR-Cache"] == "MISS", f"{b.name}: one-character change reused {a.name}"
        keys[b.name] = _key(resp)
        assert keys[a.name] != keys[b.name]
    assert len(set(keys.values())) == 2 * len(PAIRS)
    calls = predictor.calls
    assert calls == 2 * len(PAIRS)

    reused = 0
    for a, _ in PAIRS:
        for name, data in rng.sample(variants(a.render(), rng), 2):
            resp = upload(client, data)
            assert resp.headers["X-OCR-Cache"] == "HIT", f"{a.name} {name} not reused"
            assert _key(resp) == keys[a.name], f"{a.name} {name} got another key"
            reused += 1
    assert reused >= 100
    assert predictor.calls == calls  # no inference for any variant


def test_near_duplicate_hit_redirects_to_original(client, predictor) -> None:
    img = page("Near duplicate 12345")
    first = _key(upload(client, png(img)))
    for data in (encode(img, "JPEG", quality=70), encode(img.resize((544, round(img.height * 0.85))), "PNG")):
        resp = upload(client, data)
        assert resp.headers["X-OCR-Cache"] == "HIT" and _key(resp) == first
    assert predictor.calls == 1


def test_single_flight_20_concurrent_uploads_one_inference(app, predictor) -> None:
    predictor.delay = 0.3  # keep the leader busy so the others really overlap
    data = png(page("Single flight 2026-0042"))
    barrier = threading.Barrier(20)
    results: list[tuple[int, str, str]] = []

    def go() -> None:
        client = app.test_client()
        barrier.wait()
        resp = upload(client, data)
        results.append((resp.status_code, resp.headers.get("Location", ""), resp.headers.get("X-OCR-Cache", "")))

    threads = [threading.Thread(target=go) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 20
    assert {r[0] for r in results} == {303}
    assert len({r[1] for r in results}) == 1
    assert sorted(r[2] for r in results) == ["HIT"] * 19 + ["MISS"]
    assert predictor.calls == 1


def test_stale_lock_of_crashed_worker_does_not_block(app, predictor, settings) -> None:
    svc = app.extensions["ocr"]
    from cache.fingerprint import pixel_digest
    from origin.images import decode_image

    data = png(page("crashed leader"))
    digest = pixel_digest(decode_image(data, max_pixels=10**7).image)
    assert svc.index.try_lock(svc.namespace, digest, ttl_ms=300)  # a "crashed" holder, never released
    resp = upload(app.test_client(), data)
    assert resp.status_code == 303 and resp.headers["X-OCR-Cache"] == "MISS"
    assert predictor.calls == 1


def test_redis_down_uploads_still_work(settings, predictor, caplog) -> None:
    from dataclasses import replace

    down = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(down, predictor=predictor).test_client()
    first = upload(client, png())
    assert first.status_code == 303 and first.headers["X-OCR-Cache"] == "MISS"
    location = first.headers["Location"]
    assert client.get(location).status_code == 200
    second = upload(client, png())  # exact match needs only storage
    assert second.headers["X-OCR-Cache"] == "HIT" and second.headers["Location"] == location
    # a re-encoding cannot be matched without the index: recognised again, but never wrong
    third = upload(client, encode(page(), "JPEG", quality=90))
    assert third.status_code == 303
    assert predictor.calls == 2
    assert any("redis unavailable" in r.getMessage() for r in caplog.records)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"]["redis"].startswith("degraded")


def test_redis_disabled_by_empty_url(settings, predictor) -> None:
    from dataclasses import replace

    client = create_app(replace(settings, redis_url=""), predictor=predictor).test_client()
    assert upload(client, png()).status_code == 303
    assert client.get("/readyz").get_json()["checks"]["redis"] == "disabled"


def test_new_model_version_new_namespace_old_results_readable(settings, predictor) -> None:
    old_client = create_app(settings, predictor=predictor).test_client()
    old_key = _key(upload(old_client, png()))

    class NextModel(CountingPredictor):
        pass

    new = NextModel(predictor.inner)
    new.model_version = predictor.model_version + "-next"
    new_client = create_app(settings, predictor=new).test_client()
    resp = upload(new_client, png())
    assert resp.headers["X-OCR-Cache"] == "MISS" and new.calls == 1  # not served the old answer
    new_key = _key(resp)
    assert new_key != old_key
    assert old_key[:4] == model_namespace(predictor.model_name, predictor.model_version)
    assert new_key[:4] == model_namespace(new.model_name, new.model_version)
    assert new_client.get(f"/results/{old_key}").status_code == 200  # old URL still readable
    assert new_client.get(f"/results/{new_key}").get_json()["model"]["version"].endswith("-next")
    # a re-encoding under the new model reuses the new result, never the old one
    again = upload(new_client, encode(page(), "JPEG", quality=85))
    assert again.headers["X-OCR-Cache"] == "HIT" and _key(again) == new_key


def test_same_key_on_every_origin_of_a_deployment(settings, predictor, tmp_path) -> None:
    from dataclasses import replace

    other = replace(settings, storage_url=f"file://{tmp_path / 'other-origin'}")
    k1 = _key(upload(create_app(settings, predictor=predictor).test_client(), png()))
    k2 = _key(upload(create_app(other, predictor=predictor).test_client(), png()))
    assert k1 == k2
    # another deployment: its own secret, storage and Redis
    elsewhere = replace(settings, secret=b"another-deployment-secret-000", redis_url="",
                        storage_url=f"file://{tmp_path / 'elsewhere'}")
    k3 = _key(upload(create_app(elsewhere, predictor=predictor).test_client(), png()))
    assert k3 != k1


def test_storage_written_before_index(settings, predictor, any_store, redis_client) -> None:
    """Both stores: result complete in storage, then recorded; HIT served from storage."""
    client = create_app(settings, predictor=predictor, store=any_store).test_client()
    key = _key(upload(client, png()))
    assert any_store.exists(key, "result.json") and any_store.exists(key, "signature.png")
    assert any_store.exists(key, "thumbnail.jpg")
    assert list(any_store.iter_keys()) == [key]
    assert client.get(f"/results/{key}").get_json()["key"] == key
    again = upload(client, encode(page(), "JPEG", quality=80))
    assert again.headers["X-OCR-Cache"] == "HIT" and _key(again) == key


def test_index_entry_without_storage_is_ignored(app, predictor, settings) -> None:
    """The index is never trusted alone: a candidate whose signature is gone is skipped."""
    svc = app.extensions["ocr"]
    client = app.test_client()
    img = page("ghost entry")
    from cache.fingerprint import phash64

    svc.index.record(svc.namespace, svc.namespace + "a" * 28, phash64(img), created_at=1.0)
    resp = upload(client, png(img))
    assert resp.headers["X-OCR-Cache"] == "MISS" and _key(resp) != svc.namespace + "a" * 28
