"""HTTP contract of the origin: upload → 303 → result, headers for the CDN, errors as JSON."""
from __future__ import annotations

import re

import pytest

from cache.keys import KEY_RE
from origin import create_app
from origin.settings import Settings

from .helpers import page, png, upload

RESULT_FIELDS = {"key", "text", "lines", "phash", "sha256", "width", "height", "model", "finder",
                 "rotation", "skew", "elapsed_ms", "created_at"}


def test_upload_redirects_then_result_served(client, predictor) -> None:
    resp = upload(client, png())
    assert resp.status_code == 303
    assert resp.headers["X-OCR-Cache"] == "MISS"
    assert resp.headers["Cache-Control"] == "no-store"
    location = resp.headers["Location"]
    key = location.rsplit("/", 1)[1]
    assert location == f"/results/{key}" and KEY_RE.fullmatch(key)
    assert predictor.calls == 1

    got = client.get(location)
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    assert got.headers["Cache-Control"] == "public, max-age=604800, immutable"
    assert got.headers["ETag"]
    doc = got.get_json()
    assert RESULT_FIELDS <= set(doc)
    assert doc["key"] == key
    assert (doc["width"], doc["height"]) == page().size
    assert set(doc["model"]) >= {"name", "version"}
    assert doc["finder"] in {"classical", "learned"}
    assert re.fullmatch(r"[0-9a-f]{16}", doc["phash"]) and re.fullmatch(r"[0-9a-f]{64}", doc["sha256"])
    assert doc["rotation"] == 0 and doc["skew"] == 0.0
    assert doc["lines"]
    for line in doc["lines"]:
        assert set(line) >= {"text", "confidence", "box", "words"} and len(line["box"]) == 4
        # the stored words are the line's words, each with its box
        assert " ".join(w["text"] for w in line["words"]) == line["text"]
        assert all(len(w["box"]) == 4 and len(w["polygon"]) == 4 for w in line["words"])

    thumb = client.get(f"{location}/thumbnail.jpg")
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert thumb.data[:2] == b"\xff\xd8"
    assert thumb.headers["Cache-Control"] == "public, max-age=604800, immutable"


def test_second_upload_is_hit_without_inference(client, predictor) -> None:
    first = upload(client, png())
    second = upload(client, png())
    assert second.status_code == 303 and second.headers["X-OCR-Cache"] == "HIT"
    assert second.headers["Location"] == first.headers["Location"]
    assert predictor.calls == 1


def test_raw_body_upload(client, predictor) -> None:
    resp = upload(client, png(), raw_type="image/png")
    assert resp.status_code == 303
    assert upload(client, png()).headers["Location"] == resp.headers["Location"]


def test_json_format_inline(client, predictor) -> None:
    miss = upload(client, png(), json=True)
    assert miss.status_code == 201 and miss.headers["X-OCR-Cache"] == "MISS"
    assert miss.headers["Cache-Control"] == "no-store"
    doc = miss.get_json()
    assert RESULT_FIELDS <= set(doc)
    hit = client.post("/ocr", data=png(), content_type="image/png", headers={"Accept": "application/json"})
    assert hit.status_code == 200 and hit.headers["X-OCR-Cache"] == "HIT"
    assert hit.get_json() == doc == client.get(f"/results/{doc['key']}").get_json()
    assert predictor.calls == 1


def test_conditional_get(client) -> None:
    location = upload(client, png()).headers["Location"]
    etag = client.get(location).headers["ETag"]
    again = client.get(location, headers={"If-None-Match": etag})
    assert again.status_code == 304


@pytest.mark.parametrize("key", ["abc", "A" * 32, "a" * 31 + "1", "a" * 33, "....", "a" * 31 + "%20", "a" * 31 + "."])
def test_malformed_key_400_without_storage(settings, predictor, key, monkeypatch) -> None:
    class ExplodingStore:
        def __getattr__(self, name):
            raise AssertionError(f"storage touched: {name}")

    app = create_app(settings, predictor=predictor, store=ExplodingStore())
    client = app.test_client()
    for url in (f"/results/{key}", f"/results/{key}/thumbnail.jpg"):
        resp = client.get(url)
        assert resp.status_code == 400, url
        assert resp.get_json()["error"]["code"] == "invalid_key"
        assert resp.headers["Cache-Control"] == "public, max-age=60"


def test_unknown_key_404_json_short_cache(client) -> None:
    resp = client.get("/results/" + "a" * 32)
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"
    assert resp.headers["Cache-Control"] == "public, max-age=60"
    assert client.get("/results/" + "a" * 32 + "/thumbnail.jpg").status_code == 404


def test_unknown_route_and_method_are_json(client) -> None:
    assert client.get("/nope").get_json()["error"]["code"] == "not_found"
    resp = client.get("/ocr")
    assert resp.status_code == 405 and resp.get_json()["error"]["code"] == "method_not_allowed"


def test_healthz_readyz(client) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.get_json()["checks"]
    assert checks["storage"] == "ok" and checks["redis"] == "ok" and checks["model"].startswith("ok")
    assert ready.headers["Cache-Control"] == "no-store"


def test_readyz_storage_down_503(settings, predictor, tmp_path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    from cache.store import FileResultStore

    client = create_app(settings, predictor=predictor, store=FileResultStore(blocker)).test_client()
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.headers["Cache-Control"] == "no-store"


def test_storage_down_upload_503_json(settings, predictor, tmp_path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    from cache.store import FileResultStore

    client = create_app(settings, predictor=predictor, store=FileResultStore(blocker)).test_client()
    resp = upload(client, png())
    assert resp.status_code == 503
    assert resp.get_json()["error"]["code"] == "storage_unavailable"
    assert resp.headers["Cache-Control"] == "no-store"
    get = client.get("/results/" + "a" * 32)
    assert get.status_code == 503 and get.headers["Cache-Control"] == "no-store"


def test_metrics_count_uploads_and_dedup(client) -> None:
    def value(text: str, name: str) -> float:
        m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    before = client.get("/metrics").get_data(as_text=True)
    upload(client, png(page("metrics test 1")))
    upload(client, png(page("metrics test 1")))
    after = client.get("/metrics").get_data(as_text=True)
    assert value(after, "ocr_uploads_total") - value(before, "ocr_uploads_total") == 2
    hit = 'ocr_dedup_total{match="exact",result="hit"}'
    miss = 'ocr_dedup_total{match="miss",result="miss"}'
    assert value(after, hit) - value(before, hit) == 1
    assert value(after, miss) - value(before, miss) == 1
    assert "ocr_inference_seconds_bucket" in after and "ocr_model_load_seconds" in after


def test_metrics_count_server_errors_and_refused_near_duplicates(client, settings, predictor, tmp_path,
                                                                  monkeypatch) -> None:
    """Issue 16 item 10: 500s, other 5xx and near duplicates the verifier refused were invisible."""
    from cache.fingerprint import phash64
    from cache.store import FileResultStore
    from origin.service import OcrService

    def value(text: str, name: str) -> float:
        m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    refused = "ocr_near_duplicate_rejected_total"
    internal = 'ocr_server_errors_total{code="internal_error"}'
    storage = 'ocr_server_errors_total{code="storage_unavailable"}'
    before = client.get("/metrics").get_data(as_text=True)
    # same layout, one digit apart: the pHash offers the first as a candidate, the verifier refuses it
    first, second = page("Amount due: 1,200.00"), page("Amount due: 7,200.00")
    assert bin(phash64(first) ^ phash64(second)).count("1") <= settings.hamming_distance
    assert upload(client, png(first)).headers["X-OCR-Cache"] == "MISS"
    assert upload(client, png(second)).headers["X-OCR-Cache"] == "MISS"

    def crash(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(OcrService, "submit", crash)
    resp = upload(client, png())
    assert resp.status_code == 500 and resp.get_json()["error"]["code"] == "internal_error"
    monkeypatch.undo()
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    down = create_app(settings, predictor=predictor, store=FileResultStore(blocker)).test_client()
    assert upload(down, png(page("storage down"))).status_code == 503
    after = client.get("/metrics").get_data(as_text=True)
    assert value(after, refused) - value(before, refused) >= 1
    assert value(after, internal) - value(before, internal) == 1
    assert value(after, storage) - value(before, storage) == 1


def test_request_id_echoed_or_generated(client) -> None:
    resp = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-Id"])
    err = client.get("/results/" + "a" * 32, headers={"X-Request-Id": "req-9"})
    assert err.get_json()["request_id"] == "req-9"


def test_index_page(client) -> None:
    resp = client.get("/")
    assert resp.status_code == 200 and b'name="image"' in resp.data and b'action="/ocr"' in resp.data


def test_settings_from_env(tmp_path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("x" * 40 + "\n")
    s = Settings.from_env({"OCR_SECRET_FILE": str(secret_file), "OCR_REDIS_URL": "",
                           "OCR_STORAGE_URL": "s3://b/p", "OCR_HAMMING_DISTANCE": "3",
                           "AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "OCR_MAX_PIXELS": "100"})
    assert s.secret == b"x" * 40 and s.redis_url == "" and s.storage_url == "s3://b/p"
    assert s.hamming_distance == 3 and s.s3_endpoint_url == "http://127.0.0.1:5000" and s.max_pixels == 100
    assert "x" * 40 not in repr(s)
    d = Settings.from_env({"OCR_SECRET": "y" * 32})
    assert (d.redis_url, d.storage_url, d.max_upload_bytes, d.max_pixels, d.hamming_distance) == (
        "redis://127.0.0.1:6379/0", "file://var/results", 20971520, 40000000, 4)


@pytest.mark.parametrize("env", [
    {"OCR_SECRET": "short"},
    {"OCR_SECRET_FILE": "/nonexistent/secret"},
    {"OCR_SECRET": "y" * 32, "OCR_HAMMING_DISTANCE": "9"},
    {"OCR_SECRET": "y" * 32, "OCR_MAX_PIXELS": "lots"},
])
def test_settings_refuse_bad_env(env) -> None:
    from origin.settings import ConfigError

    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_photo_detector_is_on_by_default_and_can_be_turned_off() -> None:
    from origin import load_predictor

    on = load_predictor(Settings.from_env({"OCR_SECRET": "y" * 32}))
    off = load_predictor(Settings.from_env({"OCR_SECRET": "y" * 32, "OCR_DETECTOR_PATH": "off"}))
    assert on.detector is not None and off.detector is None
    # what reads pages differs, so the cache namespace must differ too
    assert on.model_version != off.model_version
