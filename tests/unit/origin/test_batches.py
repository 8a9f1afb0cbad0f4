"""POST /ocr/batch and GET /batches/<id>: images or one ZIP, each item deduplicated and queued."""
from __future__ import annotations

import io
import zipfile

import pytest

from origin.batches import Limits, UnsafeArchive, read_zip, safe_name

from .helpers import page, png


def make_zip(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, body in entries.items():
            zf.writestr(name, body)
    return buf.getvalue()


def post_zip(client, data: bytes):
    return client.post("/ocr/batch", data=data, content_type="application/zip")


def test_zip_of_ten_images_yields_ten_results(client, predictor) -> None:
    entries = {f"scans/page-{n:02d}.png": png(page(f"Batch item {n} total {n * 111}.00")) for n in range(10)}
    resp = post_zip(client, make_zip(entries))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.headers["Location"].startswith("/batches/") and resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Retry-After"] == "1" and resp.get_json()["location"] == resp.headers["Location"]
    state = client.get(resp.headers["Location"])
    assert state.status_code == 200 and state.headers["Cache-Control"] == "no-store"
    doc = state.get_json()
    assert doc["status"] == "done" and doc["counts"] == {"done": 10}
    assert [i["name"] for i in doc["items"]] == sorted(entries)
    assert len({i["key"] for i in doc["items"]}) == 10
    for item in doc["items"]:
        result = client.get(item["result"])
        assert result.status_code == 200 and result.get_json()["key"] == item["key"]
    assert predictor.calls == 10
    # every item is deduplicated like a single upload: the same ZIP again runs nothing
    again = client.get(post_zip(client, make_zip(entries)).headers["Location"]).get_json()
    assert {i["key"] for i in again["items"]} == {i["key"] for i in doc["items"]}
    assert predictor.calls == 10


def test_multipart_images_and_a_bad_item(client, predictor) -> None:
    data = {"image": [(io.BytesIO(png(page("First of two"))), "a.png"),
                      (io.BytesIO(b"not an image at all"), "b.txt"),
                      (io.BytesIO(png(page("Second of two"))), "c.png")]}
    resp = client.post("/ocr/batch", data=data, content_type="multipart/form-data")
    assert resp.status_code == 202
    doc = client.get(resp.headers["Location"]).get_json()
    assert [(i["name"], i["status"]) for i in doc["items"]] == [("a.png", "done"), ("b.txt", "rejected"),
                                                                ("c.png", "done")]
    assert doc["items"][1]["code"] == "unsupported_image" and doc["items"][1]["error"]
    assert predictor.calls == 2


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/etc/passwd", "C:/x.png", "a\\..\\b.png"])
def test_escaping_names_are_refused_400(client, predictor, name) -> None:
    resp = post_zip(client, make_zip({"ok.png": png(page("fine")), name: png(page("evil"))}))
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "unsafe_archive", resp.get_data(as_text=True)
    assert predictor.calls == 0  # refused before anything was queued


def test_zip_bombs_are_refused_413(client, predictor) -> None:
    # declared small or not, an entry is inflated only up to the limits (here 2 MB per item)
    bomb = make_zip({"bomb.png": b"\0" * (50 * 1024 * 1024)})
    assert len(bomb) < 100 * 1024
    resp = post_zip(client, bomb)
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "archive_too_large"
    # under the size limit but inflating ~1000x: a bomb by ratio
    ratio = post_zip(client, make_zip({"ratio.png": b"\0" * (1536 * 1024)}))
    assert ratio.status_code == 413 and "zip bomb" in ratio.get_json()["error"]["message"]
    nested = post_zip(client, make_zip({"inner.zip": make_zip({"a.png": png(page("nested"))})}))
    assert nested.status_code == 400 and nested.get_json()["error"]["code"] == "unsafe_archive"
    assert predictor.calls == 0


def test_read_zip_limits_apply_to_inflated_bytes() -> None:
    limits = Limits(max_items=3, max_item_bytes=1000, max_total_bytes=1500)
    assert read_zip(make_zip({"a": b"x" * 900}), limits) == [("a", b"x" * 900)]
    with pytest.raises(Exception, match="1500"):
        read_zip(make_zip({"a": b"x" * 900, "b": b"y" * 900}), limits)
    with pytest.raises(Exception, match="4 files"):
        read_zip(make_zip({str(n): b"z" for n in range(4)}), limits)
    assert safe_name("dir/./x.png") == "dir/x.png"
    with pytest.raises(UnsafeArchive):
        safe_name("dir/../../x.png")


def test_unknown_and_malformed_batch_ids(client) -> None:
    assert client.get("/batches/" + "a" * 22).status_code == 404
    assert client.get("/batches/..%2F..").status_code in (400, 404)
    assert client.get("/batches/short").status_code == 400
