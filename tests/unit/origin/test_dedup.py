"""Cache correctness through the whole upload flow (issue 4): real Redis, real storage."""
from __future__ import annotations

import hashlib
import logging
import random
import threading
from dataclasses import replace
from typing import Any

import pytest

from cache import redis_keys, verify
from cache.__main__ import main as cache_main
from cache.fingerprint import phash64
from cache.index import RedisResultIndex
from cache.keys import model_namespace
from cache.store import FileResultStore, S3ResultStore
from origin import create_app
from tests.servers import RedisServer
from tests.unit.cache.corpus import CJK_FONTS, Doc, encode, one_char_pairs, render_lines, variants

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


def _rejections(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith("near-duplicate candidate")
               and "same=False" in r.getMessage())


def test_corpus_one_char_pairs_never_share_and_variants_always_do(client, predictor, caplog) -> None:
    """50 one-character pairs (ASCII and Chinese, 4+ fonts, 11-30 px) get 100 distinct keys, the
    changed page arriving re-encoded or resized; 100 re-encodings/resizes/EXIF variants of the
    first pages (every kind at least 14 times) all reuse their page's key without inference."""
    caplog.set_level(logging.INFO, logger="origin.service")
    rng = random.Random(5)
    keys: dict[str, str] = {}
    for i, (a, b) in enumerate(PAIRS):
        ia, ib = a.render(), b.render()
        keys[a.name] = _key(upload(client, encode(ia, "PNG")))
        # the changed page as a client would re-send it: JPEG, optimised PNG, resized PNG, resized
        # JPEG. pHash says "same" for all 50 pairs (d <= 4); the verifier must say no
        name, data = variants(ib, rng)[i % 4]
        resp = upload(client, data)
        assert resp.headers["X-OCR-Cache"] == "MISS", f"{b.name} ({name}): one-character change reused {a.name}"
        keys[b.name] = _key(resp)
        assert keys[a.name] != keys[b.name]
    assert len(set(keys.values())) == 2 * len(PAIRS)
    assert predictor.calls == 2 * len(PAIRS)
    # the test is only worth something if the pHash candidates were found and refused
    assert _rejections(caplog) >= 45

    calls = predictor.calls
    kinds: dict[str, int] = {}
    for i, (a, _) in enumerate(PAIRS):
        page_variants = variants(a.render(), rng)
        for j in (2 * i, 2 * i + 1):
            name, data = page_variants[j % len(page_variants)]
            resp = upload(client, data)
            assert resp.headers["X-OCR-Cache"] == "HIT", f"{a.name} {name} not reused"
            assert _key(resp) == keys[a.name], f"{a.name} {name} got another key"
            kind = name.split("-")[0].rstrip("0123456789.")
            kinds[kind] = kinds.get(kind, 0) + 1
    assert sum(kinds.values()) >= 100
    assert set(kinds) == {"jpeg", "png", "resize", "exif", "webp"} and min(kinds.values()) >= 14
    assert predictor.calls == calls  # no inference for any variant


@pytest.mark.parametrize("amount_colon", [":", "："])
def test_invoice_amount_1200_vs_7200_never_share_a_key(client, predictor, amount_colon, caplog) -> None:
    """The issue's example, through the upload path: pHash distance 0-2, so only the verifier
    keeps 金额:¥7,200.00 from being served 金额:¥1,200.00's text."""
    caplog.set_level(logging.INFO, logger="origin.service")
    seen: set[str] = set()
    for font in CJK_FONTS:
        for size in (14, 20, 28):
            def invoice(amount: str) -> Any:
                return render_lines(("发票号码：20260042", f"金额{amount_colon}¥{amount}", "开票日期：2026年03月22日"),
                                    font, size, size * 24)

            first, second = invoice("1,200.00"), invoice("7,200.00")
            assert bin(phash64(first) ^ phash64(second)).count("1") <= verify_radius(client)
            k1 = _key(upload(client, png(first)))
            resp = upload(client, png(second))
            assert resp.headers["X-OCR-Cache"] == "MISS", f"{font} {size}px: 7,200.00 reused 1,200.00's result"
            k2 = _key(resp)
            assert k2 != k1
            # and a re-encoding of the second invoice finds the second, not the first
            again = upload(client, encode(second, "JPEG", quality=85))
            assert again.headers["X-OCR-Cache"] == "HIT" and _key(again) == k2
            seen.update({k1, k2})
    assert len(seen) == 2 * len(CJK_FONTS) * 3
    assert _rejections(caplog) >= 2 * len(CJK_FONTS) * 3  # every second page met its twin and was refused


def verify_radius(client) -> int:
    return client.application.extensions["ocr"].settings.hamming_distance


def test_faint_one_char_pairs_are_recognised_separately(client, predictor) -> None:
    """Grey/yellow text: the verifier cannot see a change there, so such pages never reuse by
    similarity (they are reused when pixel-identical only)."""
    rng = random.Random(12)
    inks = [(200, 200, 200), (170, 170, 170), (230, 200, 0)]
    for i, (a, b) in enumerate(one_char_pairs(9, seed=123)):
        ink = inks[i % len(inks)]
        ia = Doc(a.name, a.lines, a.font, a.size, a.width, ink=ink).render()
        ib = Doc(b.name, b.lines, b.font, b.size, b.width, ink=ink).render()
        ka = _key(upload(client, png(ia)))
        resp = upload(client, variants(ib, rng)[i % 4][1])
        assert resp.headers["X-OCR-Cache"] == "MISS" and _key(resp) != ka, (b.name, ink)
        assert _key(upload(client, png(ia))) == ka  # identical pixels: still one result


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


class _FailsOnce(CountingPredictor):
    """The first recognition raises (a crashing job); later ones work."""

    def read(self, image: Any, *, single_line: bool = False) -> Any:
        result = super().read(image, single_line=single_line)
        if self.calls == 1:
            raise RuntimeError("recognizer crashed")
        return result


def test_failed_job_is_replaced_by_the_next_upload(settings, predictor) -> None:
    failing = _FailsOnce(predictor.inner)
    client = create_app(settings, predictor=failing).test_client()
    data = png(page("crashing job 2026-0042"))
    first = upload(client, data)
    assert first.status_code == 503, first.get_data(as_text=True)
    assert first.get_json()["error"]["code"] == "recognition_failed" and first.headers["Retry-After"]
    key = next(iter(client.application.extensions["ocr"].queue.queue.failed_job_registry.get_job_ids()))
    state = client.get(f"/jobs/{key}")
    assert state.status_code == 200 and state.get_json()["status"] == "failed"
    assert "Traceback" not in state.get_json()["error"]
    # its bytes were remembered when the job was queued: a failed job behind them is not joined
    svc = client.application.extensions["ocr"]
    assert svc.index.key_for_bytes(svc.namespace, hashlib.sha256(data).hexdigest()) == f"exact:{key}"
    again = upload(client, data)  # the failed job is replaced, not joined
    assert again.status_code == 303 and again.headers["X-OCR-Cache"] == "MISS" and _key(again) == key
    assert failing.calls == 2
    assert client.get(f"/jobs/{key}").status_code == 303


def test_redis_down_cached_and_exact_served_new_image_503(settings, predictor, tmp_path, caplog) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        index = RedisResultIndex.from_url(server.url, breaker_cooldown=0)
        client = create_app(replace(settings, redis_url=server.url), predictor=predictor, index=index).test_client()
        first = upload(client, png())
        assert first.status_code == 303 and first.headers["X-OCR-Cache"] == "MISS"
        location = first.headers["Location"]
        server.stop()
        assert client.get(location).status_code == 200
        second = upload(client, png())  # exact match needs only storage
        assert second.headers["X-OCR-Cache"] == "HIT" and second.headers["Location"] == location
        # a new image (or a re-encoding, unmatched without the index) waits for Redis: clean 503
        for data in (png(page("Redis is down 2026-0043")), encode(page(), "JPEG", quality=90)):
            resp = upload(client, data)
            assert resp.status_code == 503 and resp.headers["Retry-After"] == "10"
            assert resp.get_json()["error"]["code"] == "queue_unavailable"
            assert resp.headers["Cache-Control"] == "no-store"
        assert predictor.calls == 1
        assert any("redis unavailable" in r.getMessage() for r in caplog.records)
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.get_json()["checks"]["redis"].startswith("degraded")
    finally:
        server.stop()


def test_redis_disabled_by_empty_url(settings, predictor) -> None:
    client = create_app(replace(settings, redis_url=""), predictor=predictor).test_client()
    resp = upload(client, png())
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "queue_unavailable"
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
    other = replace(settings, storage_url=f"file://{tmp_path / 'other-origin'}")
    k1 = _key(upload(create_app(settings, predictor=predictor).test_client(), png()))
    k2 = _key(upload(create_app(other, predictor=predictor).test_client(), png()))
    assert k1 == k2
    # another deployment: its own secret and storage (Redis may even be shared: the job id is
    # the key, and the keys differ)
    elsewhere = replace(settings, secret=b"another-deployment-secret-000",
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

    svc.index.record(svc.namespace, svc.namespace + "a" * 28, phash64(img), created_at=1.0)
    resp = upload(client, png(img))
    assert resp.headers["X-OCR-Cache"] == "MISS" and _key(resp) != svc.namespace + "a" * 28


class _StopsRedisWhileRecognising(CountingPredictor):
    """Stops the real redis-server in the middle of the first upload, after the lookup and the
    enqueue, before the result is stored and indexed."""

    def __init__(self, inner: Any, server: RedisServer) -> None:
        super().__init__(inner)
        self.server = server

    def read(self, image: Any, *, single_line: bool = False) -> Any:
        if self.calls == 0:
            self.server.stop()
        return super().read(image, single_line=single_line)


def test_redis_stopped_mid_upload_then_restarted_and_reindexed(settings, predictor, tmp_path, caplog) -> None:
    """Storage is the source of truth: Redis dies mid-job, the result is still stored and served,
    new images get a clean 503 until Redis is back, and `python -m cache reindex` restores
    near-duplicate reuse."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        stopper = _StopsRedisWhileRecognising(predictor.inner, server)
        # cooldown 0: every call tries Redis again, so the test needs no clock
        index = RedisResultIndex.from_url(server.url, breaker_cooldown=0)
        conf = replace(settings, redis_url=server.url)
        client = create_app(conf, predictor=stopper, index=index).test_client()
        img, other = page("Outage invoice 2026-0042"), page("Outage invoice 2026-0043")

        first = upload(client, png(img))  # Redis stops while this one is being recognised
        assert server.proc is None
        # the job's bookkeeping could not be written: the client is told to retry...
        assert first.status_code == 503 and first.headers["Retry-After"]
        assert any(r.getMessage().startswith("redis unavailable op=record") for r in caplog.records)
        # ...and the retry finds the result the job stored: nothing was lost
        again = upload(client, png(img))
        assert again.headers["X-OCR-Cache"] == "HIT"
        key = _key(again)
        assert client.get(f"/results/{key}").get_json()["key"] == key
        assert upload(client, png(other)).status_code == 503  # new content waits for Redis
        assert stopper.calls == 1
        assert client.get("/readyz").get_json()["checks"]["redis"].startswith("degraded")

        # Redis back (empty: no persistence); rebuild the index from storage, then dedup works
        server.start()
        second = upload(client, png(other))
        assert second.status_code == 303 and second.headers["X-OCR-Cache"] == "MISS"
        jpeg = upload(client, encode(img, "JPEG", quality=85))
        assert jpeg.headers["X-OCR-Cache"] == "MISS"  # the index is empty until rebuilt
        assert cache_main(["reindex", "--clear", "--redis-url", server.url, "--storage-url", conf.storage_url]) == 0
        calls = stopper.calls
        for image, same_content in ((img, {key, _key(jpeg)}), (other, {_key(second)})):
            resp = upload(client, encode(image, "JPEG", quality=75))
            assert resp.headers["X-OCR-Cache"] == "HIT" and _key(resp) in same_content
        assert stopper.calls == calls
    finally:
        server.stop()


def test_foreign_or_malformed_index_entries_never_reach_storage(app, predictor, monkeypatch, caplog) -> None:
    """Redis is not trusted: an entry with a malformed key or another model's key is skipped
    before any storage access, and the upload is recognised normally."""
    svc = app.extensions["ocr"]
    img = page("poisoned index")
    ph = phash64(img)
    other_ns = model_namespace("another-model", "1")
    svc.index.record(svc.namespace, "../../etc/passwd" + "a" * 16, ph, created_at=3.0)
    svc.index.record(svc.namespace, other_ns + "a" * 28, ph, created_at=2.0)
    asked: list[str] = []
    real_get = svc.store.get
    monkeypatch.setattr(svc.store, "get", lambda key, name: asked.append(key) or real_get(key, name))
    resp = upload(app.test_client(), png(img))
    assert resp.status_code == 303 and resp.headers["X-OCR-Cache"] == "MISS"
    # both poisoned entries were candidates (so the check below is not vacuous) and were refused
    ignored = [r.getMessage() for r in caplog.records if "candidate ignored" in r.getMessage()]
    assert len(ignored) == 2, ignored
    assert not [k for k in asked if not (k.startswith(svc.namespace) and len(k) == 32)], asked
    assert predictor.calls == 1


def test_pages_over_signature_limit_are_reused_only_when_identical(client, predictor, app, monkeypatch,
                                                                  redis_client) -> None:
    monkeypatch.setattr(verify, "MAX_PIXELS", 60_000)  # the page below has 640 x 124 = 79,360
    img = page("A large scan 2026-0042")
    assert img.width * img.height > verify.MAX_PIXELS
    key = _key(upload(client, png(img)))
    store = app.extensions["ocr"].store
    assert store.exists(key, "result.json") and not store.exists(key, "signature.png")
    # not indexed (nothing to verify a near duplicate against): no band or pHash key
    assert not redis_client.keys(redis_keys.PREFIX + "b:*") and not redis_client.keys(redis_keys.PREFIX + "ph:*")
    assert _key(upload(client, png(img))) == key  # identical pixels: exact HIT
    assert upload(client, encode(img, "JPEG", quality=90)).headers["X-OCR-Cache"] == "MISS"
    assert predictor.calls == 2


def _count_decodes(monkeypatch) -> list[int]:
    import origin.service

    decodes: list[int] = []
    real = origin.service.decode_image
    monkeypatch.setattr(origin.service, "decode_image", lambda *a, **kw: decodes.append(1) or real(*a, **kw))
    return decodes


def test_identical_bytes_find_their_key_without_decoding(client, predictor, monkeypatch, redis_client) -> None:
    """Issue 16 item 5: a small file whose header claims a huge image was decoded again on every
    repeat, even when its result existed."""
    data = encode(page("decode me once"), "JPEG", quality=80)
    first = upload(client, data)
    assert first.status_code == 303 and first.headers["X-OCR-Cache"] == "MISS"
    decodes = _count_decodes(monkeypatch)
    again = upload(client, data)
    assert again.headers["X-OCR-Cache"] == "HIT" and again.headers["X-OCR-Match"] == "exact"
    assert again.headers["Location"] == first.headers["Location"]
    assert decodes == [] and predictor.calls == 1
    # Redis is not trusted: another namespace's key, a malformed key or kind is ignored (decoded)
    entries = redis_client.keys(redis_keys.PREFIX + "bytes:*")
    assert len(entries) == 1
    for n, poisoned in enumerate(["exact:zzzz" + "a" * 28, "exact:../../etc/passwd", "magic:" + _key(first)], 1):
        redis_client.set(entries[0], poisoned)
        third = upload(client, data)
        assert third.headers["X-OCR-Cache"] == "HIT" and third.headers["Location"] == first.headers["Location"]
        assert len(decodes) == n


def test_bytes_of_a_near_duplicate_stay_a_near_hit(client, predictor, monkeypatch) -> None:
    img = page("Near duplicate bytes 777")
    first = _key(upload(client, png(img)))
    copy = encode(img, "JPEG", quality=70)
    assert upload(client, copy).headers["X-OCR-Match"] == "near"
    decodes = _count_decodes(monkeypatch)
    again = upload(client, copy)
    assert again.headers["X-OCR-Match"] == "near" and _key(again) == first and decodes == []
    assert predictor.calls == 1


def test_bytes_entry_without_stored_result_is_decoded(client, predictor, tmp_path, monkeypatch) -> None:
    """The shortcut never answers from Redis alone: a result missing from storage means decode."""
    data = png(page("gone from storage"))
    key = _key(upload(client, data))
    removed = [p for p in (tmp_path / "results").rglob("*") if p.is_file() and key in str(p)]
    assert {p.name for p in removed} == {"result.json", "signature.png", "thumbnail.jpg"}
    for path in removed:  # the whole result (its signature too: no near duplicate of itself)
        path.unlink()
    decodes = _count_decodes(monkeypatch)
    again = upload(client, data)
    assert decodes == [1] and _key(again) == key and predictor.calls == 2


CUSTOMERS = ["Acme Ltd", "Beta GmbH", "Gamma SA", "Delta Inc", "Epsilon", "Zeta Co", "Eta LLC", "Theta AG",
             "Iota BV", "Kappa", "Lambda Ltd", "Mu Corp"]


def test_a_copy_among_look_alikes_is_tried_first(client, predictor, caplog) -> None:
    """Issue 16 item 6: after 12 invoices of one template, a JPEG copy of the first was
    recognised again (the 8 nearest pHash candidates were all its siblings)."""
    rng = random.Random(1)
    invoices = [render_lines((f"INVOICE No. 2026-{1000 + i}", f"Customer: {name}", f"Date: 2026-11-{i + 3:02d}",
                              f"Amount due: ${rng.randint(100, 9999)}.{rng.randint(0, 99):02d}",
                              "Thank you for your business."), "dejavu-sans", 20, 640)
                for i, name in enumerate(CUSTOMERS)]
    keys = [_key(upload(client, png(img))) for img in invoices]
    assert len(set(keys)) == 12 and predictor.calls == 12
    caplog.set_level(logging.INFO, logger="origin.service")
    for n in (0, 5):
        caplog.clear()
        resp = upload(client, encode(invoices[n], "JPEG", quality=70))
        assert resp.headers["X-OCR-Match"] == "near" and _key(resp) == keys[n]
        tried = [r.getMessage() for r in caplog.records if r.getMessage().startswith("near-duplicate candidate key=")]
        assert len(tried) == 1, tried  # the true duplicate came first: no sibling was verified
    assert predictor.calls == 12
