"""The web app: the upload page, the shareable result view, the API docs and their static assets.

Caching: assets are named by their content hash (`/static/app.3f2a9c1b.js`) and cached a year,
immutable; the HTML that names them is short-lived, so a deploy reaches browsers and the CDN within
`PAGE_MAX_AGE`. Nothing is fetched from elsewhere (machines may be offline) and nothing is inline
(a strict Content-Security-Policy allows only same-origin scripts and styles).
"""
from __future__ import annotations

import hashlib
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template
from werkzeug.wrappers import Response as WResponse

from .errors import InvalidResultKey, ResultNotFound
from .openapi import build_spec
from .units import human_bytes, human_pixels
from cache.keys import is_valid_key

logger = logging.getLogger(__name__)
bp = Blueprint("web", __name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSET_MAX_AGE = 365 * 24 * 3600
PAGE_MAX_AGE = 60  # HTML: a deploy's new asset names reach every client within a minute


@dataclass(frozen=True)
class Asset:
    name: str          # app.js
    versioned: str     # app.3f2a9c1b.js
    body: bytes
    content_type: str


class Assets:
    """The files of origin/static, read once at startup and addressed by content hash."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.by_name: dict[str, Asset] = {}
        self.by_versioned: dict[str, Asset] = {}
        for path in sorted(directory.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            body = path.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:10]
            versioned = f"{path.stem}.{digest}{path.suffix}"
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype in ("application/javascript", "image/svg+xml"):
                ctype += "; charset=utf-8"
            asset = Asset(path.name, versioned, body, ctype)
            self.by_name[path.name] = asset
            self.by_versioned[versioned] = asset

    def url(self, name: str) -> str:
        return f"/static/{self.by_name[name].versioned}"


def assets() -> Assets:
    return current_app.extensions["ocr_assets"]


def _page(template: str, **context: object) -> Response:
    svc = current_app.extensions["ocr"]
    identity = svc.identity()  # the queue workers' model (None until one has registered)
    resp = Response(render_template(
        template, asset=assets().url, model_name=identity.name if identity else "(no worker yet)",
        model_version=identity.version if identity else "", max_upload_bytes=svc.settings.max_upload_bytes,
        max_upload=human_bytes(svc.settings.max_upload_bytes),
        max_pixels=svc.settings.max_pixels, max_pixels_human=human_pixels(svc.settings.max_pixels),
        **context))
    resp.headers["Cache-Control"] = f"public, max-age={PAGE_MAX_AGE}"
    return resp


@bp.get("/")
def index_page() -> Response:
    return _page("index.html")


@bp.get("/view/<key>")
def view_page(key: str) -> Response:
    """A static page per key (it loads /results/<key> itself), so the CDN can keep it too."""
    if not is_valid_key(key):
        raise InvalidResultKey()
    return _page("view.html", key=key)


@bp.get("/docs")
def docs_page() -> Response:
    return _page("docs.html", spec=build_spec(current_app))


@bp.get("/openapi.json")
def openapi_json() -> Response:
    resp = jsonify(build_spec(current_app))
    resp.headers["Cache-Control"] = f"public, max-age={PAGE_MAX_AGE}"
    return resp


@bp.get("/static/<name>")
def static_asset(name: str) -> Response:
    asset = assets().by_versioned.get(name)
    if asset is None:  # an old or unknown hash: never answer it with other content
        raise ResultNotFound(f"no static asset {name!r}")
    resp = Response(asset.body, content_type=asset.content_type)
    resp.headers["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE}, immutable"
    return resp


@bp.get("/favicon.ico")
def favicon() -> WResponse:
    """Browsers ask for /favicon.ico whatever the page says; send them to the versioned icon."""
    resp = redirect(assets().url("favicon.svg"), code=301)
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp


def init_app(app: Flask) -> None:
    app.extensions["ocr_assets"] = Assets()
    app.register_blueprint(bp)
