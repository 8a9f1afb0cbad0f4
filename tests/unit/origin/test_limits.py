"""Upload rate limit (shared through real Redis) and optional API keys (issue 16 item 7)."""
from __future__ import annotations

import hashlib
import io
import time
from dataclasses import replace

import pytest

from origin import create_app
from origin.settings import ConfigError
from tests.servers import free_port

from .helpers import page, png, upload


@pytest.fixture
def make_client(predictor):
    """A test client of a new app (a new origin); its Redis connections are closed afterwards
    (an unclosed socket is a ResourceWarning, an error in this suite)."""
    apps = []

    def make(conf):
        apps.append(create_app(conf, predictor=predictor))
        return apps[-1].test_client()

    yield make
    for app in apps:
        inner = app.extensions["ocr"].index.inner
        if inner is not None:
            inner.client.connection_pool.disconnect()


def _codes(client, n: int, **kw) -> list[int]:
    return [upload(client, png(page(f"rate {i}")), **kw).status_code for i in range(n)]


def test_burst_then_429_json_with_retry_after_across_origins(settings, predictor, make_client) -> None:
    limited = replace(settings, rate_limit=0.01, rate_burst=3)  # no refill within the test
    one = make_client(limited)
    other = make_client(limited)  # a second origin, same Redis
    assert _codes(one, 2) == [303, 303]
    assert upload(other, png(page("from the other origin"))).status_code == 303
    resp = upload(one, png(page("one too many")))
    assert resp.status_code == 429
    assert resp.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 100
    assert resp.headers["Cache-Control"] == "no-store"
    assert upload(other, png(page("still too many"))).status_code == 429
    assert predictor.calls == 3  # refused uploads cost no recognition
    # another client (nginx's X-Real-IP from a trusted proxy) has its own bucket
    assert upload(one, png(page("someone else")), headers={"X-Real-IP": "203.0.113.9"}).status_code == 303


def test_bucket_refills(settings, make_client) -> None:
    client = make_client(replace(settings, rate_limit=0.5, rate_burst=1))
    assert upload(client, png(page("first"))).status_code == 303
    refused = upload(client, png(page("second")))
    assert refused.status_code == 429
    time.sleep(int(refused.headers["Retry-After"]) + 0.2)
    assert upload(client, png(page("second"))).status_code == 303


def test_default_is_on_and_generous(settings) -> None:
    assert settings.rate_limit == 10 and settings.rate_burst == 100


def test_untrusted_peer_cannot_choose_its_bucket(settings, make_client) -> None:
    limited = replace(settings, rate_limit=0.5, rate_burst=1, forwarded_allow_ips="10.9.9.9")
    client = make_client(limited)
    codes = [upload(client, png(page(f"spoof {i}")), headers={"X-Real-IP": f"198.51.100.{i}"}).status_code
             for i in range(2)]
    assert codes == [303, 429]


def test_limiter_without_redis_lets_requests_through(settings, make_client) -> None:
    down = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit=0.5, rate_burst=1)
    client = make_client(down)
    # let through by the limiter: what answers is the queue (which needs Redis), never a 429
    codes = [upload(client, png(page(f"no redis {i}"))).get_json()["error"]["code"] for i in range(3)]
    assert codes == ["queue_unavailable"] * 3


def _keys_file(tmp_path, *keys: str):
    path = tmp_path / "api-keys"
    path.write_text("# name:sha256\n" + "".join(
        f"k{i}:{hashlib.sha256(k.encode()).hexdigest()}\n" for i, k in enumerate(keys)))
    return str(path)


def test_api_keys(settings, predictor, tmp_path, make_client) -> None:
    conf = replace(settings, api_keys_file=_keys_file(tmp_path, "alpha-secret", "beta-secret"))
    client = make_client(conf)
    missing = upload(client, png())
    assert missing.status_code == 401 and missing.get_json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = upload(client, png(), headers={"Authorization": "Bearer alpha-secreT"})
    assert wrong.status_code == 401
    assert predictor.calls == 0
    ok = upload(client, png(), headers={"Authorization": "Bearer beta-secret"})
    assert ok.status_code == 303
    assert upload(client, png(), headers={"X-API-Key": "alpha-secret"}).status_code == 303
    # results stay public: no key needed to read them
    assert client.get(ok.headers["Location"]).status_code == 200


def test_api_keys_file_must_be_usable(settings, predictor, tmp_path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("k:not-a-digest\n")
    for path in (str(bad), str(tmp_path / "absent")):
        with pytest.raises(ConfigError):
            create_app(replace(settings, api_keys_file=path), predictor=predictor)


def test_decoding_is_paid_from_the_budget_before_any_pixel_is_decoded(settings, predictor, make_client) -> None:
    """Issue 16 item 5: cheap files announcing large images cost one upload each and a decode."""
    from PIL import Image

    from tests.unit.cache.corpus import encode

    conf = replace(settings, rate_limit=0.01, rate_burst=7, rate_pixels=100_000)  # no refill in the test
    client = make_client(conf)
    small = png(page("small one"))  # 640 x ~100 px: one upload's worth
    big = Image.new("L", (1000, 450), 255)  # 450,000 px: counts as 5
    big.paste(page("big one").convert("L"), (0, 0))
    assert upload(client, small).status_code == 303
    assert upload(client, encode(big, "PNG")).status_code == 303
    # one token left: the door lets a request in, then a header announcing 450,000 px is refused
    # before decoding (a truncated file, which decoding would have answered 400 corrupt_image)
    truncated = encode(Image.new("L", (1000, 450), 128), "PNG")[:120]
    refused = upload(client, truncated)
    assert refused.status_code == 429, refused.get_data(as_text=True)
    assert "to decode count as 5 uploads" in refused.get_json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert predictor.calls == 2
    # OCR_RATE_PIXELS=0: every image counts as one upload, so the same file is decoded (and is 400)
    flat = make_client(replace(conf, rate_pixels=0))
    assert upload(flat, truncated, headers={"X-Real-IP": "203.0.113.7"}).status_code == 400


def test_batches_need_the_key_and_pay_per_image(settings, predictor, tmp_path, make_client) -> None:
    conf = replace(settings, rate_limit=0.01, rate_burst=3,
                   api_keys_file=_keys_file(tmp_path, "batch-secret"))
    client = make_client(conf)
    images = {"image": [(io.BytesIO(png(page(f"batch item {n}"))), f"{n}.png") for n in range(3)]}
    assert client.post("/ocr/batch", data=images, content_type="multipart/form-data").status_code == 401
    images = {"image": [(io.BytesIO(png(page(f"batch item {n}"))), f"{n}.png") for n in range(3)]}
    auth = {"Authorization": "Bearer batch-secret"}
    resp = client.post("/ocr/batch", data=images, content_type="multipart/form-data", headers=auth)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert predictor.calls == 3
    # three images took the whole burst of 3: the next upload waits
    assert upload(client, png(page("after the batch")), headers=auth).status_code == 429


def test_pdf_rendering_is_paid_from_the_budget_before_any_page_is_rendered(settings, predictor, make_client,
                                                                          monkeypatch) -> None:
    """A PDF's page boxes say how many pixels its pages render to: those are charged like an
    image's, before a job exists, so a small file asking for a huge render is a 429, not a render."""
    from PIL import Image

    from origin import pdf

    rendered: list[int] = []
    real_render = pdf.render_pages
    monkeypatch.setattr(pdf, "render_pages", lambda *a, **kw: rendered.append(1) or real_render(*a, **kw))

    def big_pdf(text: str) -> bytes:
        # 200 x 150 px pages declared at 20 dpi: their boxes render to 2000 x 1500 (3 MP) at 200 dpi
        pages = []
        for n in range(2):
            img = Image.new("RGB", (200, 150), "white")
            img.paste(page(f"{text} {n}", size=12, width=180).convert("RGB"), (10, 10))
            pages.append(img)
        buf = io.BytesIO()
        pages[0].save(buf, format="PDF", save_all=True, append_images=pages[1:], resolution=20)
        return buf.getvalue()

    conf = replace(settings, rate_limit=0.01, rate_burst=9, rate_pixels=1_000_000)  # no refill in the test
    client = make_client(conf)
    first = big_pdf("first")
    assert pdf.inspect(first, dpi=conf.pdf_dpi, max_pages=20, max_pixels=conf.max_pixels).pixels == 6_000_000
    # 6 MP count as 6 uploads: 3 of the 9 tokens are left
    assert upload(client, first, raw_type="application/pdf").status_code == 303
    assert rendered == [1] and predictor.calls == 2
    # the same bytes again: a HIT from their key, one token at the door, nothing rendered or charged
    again = upload(client, first, raw_type="application/pdf")
    assert again.status_code == 303 and again.headers["X-OCR-Cache"] == "HIT"
    refused = upload(client, big_pdf("second"), raw_type="application/pdf")
    assert refused.status_code == 429, refused.get_data(as_text=True)
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert "6 megapixels to decode count as 6 uploads" in refused.get_json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert rendered == [1] and predictor.calls == 2  # refused before a job: never rendered
