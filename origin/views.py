"""HTTP routes. The CDN policy of each response is set here, next to the view that makes it."""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging

from flask import Blueprint, Response, current_app, jsonify, request

from cache.errors import IndexUnavailable, StorageUnavailable
from cache.keys import is_valid_key
from cache.store import RESULT, THUMBNAIL

from . import metrics
from .errors import (BadRequest, EmptyUpload, InvalidResultKey, OriginError, PayloadTooLarge, ResultNotFound,
                     UnsupportedImage)
from .images import CONTENT_TYPES
from .service import OcrService
from .units import human_bytes

logger = logging.getLogger(__name__)
bp = Blueprint("origin", __name__)

NO_STORE = "no-store"


def service() -> OcrService:
    return current_app.extensions["ocr"]


def immutable(resp: Response) -> Response:
    """Results never change once written: a CDN may keep them a week without revalidating."""
    resp.headers["Cache-Control"] = f"public, max-age={service().settings.result_max_age}, immutable"
    return resp


# Base64 turns 3 bytes into 4 characters: the JSON body of the largest image allowed is this much
# larger than the image itself (the data-URL prefix and the JSON framing fit in the slack).
def json_body_limit(max_upload_bytes: int) -> int:
    return -(-max_upload_bytes // 3) * 4 + 65536


def _json_image(limit: int) -> bytes:
    """`{"image": "<base64>"}` (a `data:image/...;base64,` prefix is allowed): the same limits
    and answers as a multipart upload, for clients that cannot send multipart."""
    doc = request.get_json(silent=True, cache=False)
    if not isinstance(doc, dict):
        raise BadRequest('send a JSON object {"image": "<base64 of the image file>"}')
    encoded = doc.get("image", doc.get("file"))
    if encoded is None or encoded == "":
        raise EmptyUpload('the JSON upload has no `image` field: {"image": "<base64>"}')
    if not isinstance(encoded, str):
        raise BadRequest("`image` must be a string of base64")
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    if len(encoded) > json_body_limit(limit):
        raise PayloadTooLarge(f"uploads are limited to {human_bytes(limit)}")
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("`image` is not valid base64") from None


def _upload_bytes() -> bytes:
    limit = service().settings.max_upload_bytes
    ctype = (request.mimetype or "").lower()
    framing = json_body_limit(limit) if ctype == "application/json" else limit + 65536
    if request.content_length is not None and request.content_length > framing:
        raise PayloadTooLarge(f"uploads are limited to {human_bytes(limit)}")
    if ctype == "multipart/form-data":
        # `image` is ours; `file` is what most OCR clients send.
        f = request.files.get("image") or request.files.get("file")
        if f is None:
            raise EmptyUpload("multipart upload without an `image` (or `file`) field")
        data = f.read(limit + 1)
    elif ctype == "application/json":
        data = _json_image(limit)
    elif ctype in CONTENT_TYPES or ctype == "application/octet-stream":
        data = request.get_data(cache=False)
    else:
        raise UnsupportedImage(f"send the image as multipart field `image`, as a raw body with an "
                               f"image Content-Type, or as JSON {{\"image\": \"<base64>\"}} "
                               f"(got {ctype or 'no Content-Type'})")
    if len(data) > limit:
        raise PayloadTooLarge(f"uploads are limited to {human_bytes(limit)}")
    return data


def _wants_json() -> bool:
    if request.args.get("format") == "json":
        return True
    accept = request.accept_mimetypes
    return accept.quality("application/json") > accept.quality("text/html")


@bp.post("/ocr")
def upload() -> Response:
    try:
        outcome = service().submit(_upload_bytes())
    except OriginError as exc:
        if exc.status < 500:
            metrics.REJECTED.labels(exc.code).inc()
        raise
    location = f"/results/{outcome.key}"
    if _wants_json():
        body = outcome.body or service().results.get(outcome.key, RESULT)
        if body is None:  # written a moment ago; only a concurrent deletion can get here
            raise ResultNotFound()
        resp = Response(body, status=200 if outcome.hit else 201,
                        content_type="application/json; charset=utf-8")
    else:
        resp = jsonify({"key": outcome.key, "location": location})
        resp.status_code = 303
    resp.headers["Location"] = location
    resp.headers["X-OCR-Cache"] = "HIT" if outcome.hit else "MISS"
    # How a HIT was found, so a client can say which: exact (same pixels), near (verified near
    # duplicate), waited (an identical upload in flight finished first); miss on a MISS.
    resp.headers["X-OCR-Match"] = outcome.match
    resp.headers["Cache-Control"] = NO_STORE  # a cached 303 would pin one upload's answer (NOTES §3)
    return resp


def _stored(key: str, name: str, content_type: str) -> Response:
    if not is_valid_key(key):  # before any storage access
        raise InvalidResultKey()
    body = service().results.get(key, name)
    # A thumbnail (or signature) without result.json is a leftover of a failed write: only a
    # complete result's files exist for clients, and nginx would keep an orphan for a week.
    if body is None or (name != RESULT and not service().results.exists(key, RESULT)):
        raise ResultNotFound()
    resp = Response(body, content_type=content_type)
    resp.set_etag(hashlib.sha256(body).hexdigest()[:32])
    immutable(resp)
    return resp.make_conditional(request)


@bp.get("/results/<key>")
def result(key: str) -> Response:
    return _stored(key, RESULT, "application/json; charset=utf-8")


@bp.get("/results/<key>/thumbnail.jpg")
def thumbnail(key: str) -> Response:
    return _stored(key, THUMBNAIL, "image/jpeg")


@bp.get("/healthz")
def healthz() -> Response:
    resp = jsonify({"status": "ok"})
    resp.headers["Cache-Control"] = NO_STORE
    return resp


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when storage and model work. Redis is reported but not required: without it uploads
    still work (no dedup), and taking every origin out of the pool for a shared Redis outage would
    turn a degraded service into no service."""
    svc = service()
    checks: dict[str, str] = {}
    ready = True
    try:
        svc.store.ping()
        checks["storage"] = "ok"
    except StorageUnavailable as exc:
        metrics.STORAGE_ERRORS.labels("ping").inc()
        # the detail (paths, bucket names, endpoints) goes to the log, not to whoever asks
        logger.error("readiness: storage failed error=%s", exc)
        checks["storage"] = "error: storage cannot be written and read (see the origin log)"
        ready = False
    if not svc.index.enabled:
        checks["redis"] = "disabled"
    else:
        try:
            svc.index.ping()
            checks["redis"] = "ok"
        except IndexUnavailable as exc:
            metrics.REDIS_ERRORS.labels("ping").inc()
            logger.warning("readiness: redis failed error=%s", exc)
            checks["redis"] = "degraded: Redis does not answer (uploads work without dedup)"
    checks["model"] = f"ok {svc.predictor.model_name} {svc.predictor.model_version}"
    resp = jsonify({"status": "ready" if ready else "unready", "checks": checks,
                    "namespace": svc.namespace})
    resp.status_code = 200 if ready else 503
    resp.headers["Cache-Control"] = NO_STORE
    return resp


@bp.get("/metrics")
def metrics_view() -> Response:
    body, ctype = metrics.render()
    resp = Response(body, content_type=ctype)
    resp.headers["Cache-Control"] = NO_STORE
    return resp
