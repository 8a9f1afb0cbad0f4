"""What the origin lets clients see (issue 16 items 4 and 8): complete results only, no paths in
/readyz, security headers, results not world-readable."""
from __future__ import annotations

import re
import stat
from pathlib import Path

from cache.store import RESULT, SIGNATURE, THUMBNAIL, FileResultStore
from origin import create_app

from .helpers import png, upload


def test_orphan_thumbnail_is_never_served(client, settings) -> None:
    """A failed write can leave thumbnail.jpg without result.json: that is not a result."""
    store = FileResultStore(settings.storage_url.removeprefix("file://"))
    key = "abcd" + "q" * 28
    store.put(key, THUMBNAIL, b"\xff\xd8jpeg", content_type="image/jpeg")
    store.put(key, SIGNATURE, b"png", content_type="image/png")
    resp = client.get(f"/results/{key}/thumbnail.jpg")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    assert "immutable" not in resp.headers["Cache-Control"]
    store.put(key, RESULT, b"{}", content_type="application/json")  # complete now
    assert client.get(f"/results/{key}/thumbnail.jpg").status_code == 200


def test_stored_files_are_not_world_readable(client, settings) -> None:
    resp = upload(client, png())
    key = resp.headers["Location"].rsplit("/", 1)[-1]
    root = Path(settings.storage_url.removeprefix("file://")) / key
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [root, *root.iterdir()]}
    assert RESULT in modes and THUMBNAIL in modes
    assert all(mode & 0o007 == 0 for mode in modes.values()), modes


def test_readyz_does_not_print_paths(settings, predictor, tmp_path) -> None:
    blocker = tmp_path / "secret-place"
    blocker.write_text("x")
    client = create_app(settings, predictor=predictor, store=FileResultStore(blocker)).test_client()
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert str(tmp_path) not in resp.get_data(as_text=True)
    assert resp.get_json()["checks"]["storage"].startswith("error")


def test_security_headers_on_api_and_page(client) -> None:
    for resp in (client.get("/healthz"), client.get("/results/" + "a" * 32), upload(client, png())):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    html = page.get_data(as_text=True)
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(f'nonce="{nonce}"' in tag or "src=" in tag for tag in scripts)
    assert client.get("/").headers["Content-Security-Policy"] != csp  # a fresh nonce per request
