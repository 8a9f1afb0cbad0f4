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

from . import batches, limits, metrics
from .errors import (BadRequest, EmptyUpload, InvalidResultKey, OriginError, PayloadTooLarge,
                     QueueUnavailable, ResultNotFound, StorageDown, UnsupportedImage)
from .images import CONTENT_TYPES
from .jobs import JobState
from .pdf import CONTENT_TYPE as PDF_CONTENT_TYPE
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
    elif ctype in CONTENT_TYPES or ctype in ("application/octet-stream", PDF_CONTENT_TYPE):
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


def _respond_async() -> bool:
    """RFC 7240 `Prefer: respond-async`: answer 202 at once instead of waiting for the job."""
    prefer = ",".join(request.headers.getlist("Prefer")).lower()
    return any(p.strip().split(";")[0].strip() == "respond-async" for p in prefer.split(","))


def _accepted(location: str, body: dict[str, object]) -> Response:
    """202 Accepted: the work goes on; the client polls `location` (never cached) as often as
    Retry-After says, until it redirects (a job) or says done (a batch)."""
    resp = jsonify({**body, "location": location})
    resp.status_code = 202
    resp.headers["Location"] = location
    resp.headers["Retry-After"] = "1"
    resp.headers["Cache-Control"] = NO_STORE
    return resp


@bp.post("/ocr")
def upload() -> Response:
    try:
        charge = limits.check_upload()  # API key (when configured) and the per-client rate limit
        outcome = service().submit(_upload_bytes(), wait=not _respond_async(), charge=charge)
    except OriginError as exc:
        if exc.status < 500:
            metrics.REJECTED.labels(exc.code).inc()
        raise
    if outcome.pending:
        return _accepted(f"/jobs/{outcome.key}", {"key": outcome.key, "status": "queued",
                                                  "result": f"/results/{outcome.key}"})
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
    resp.headers["Cache-Control"] = NO_STORE  # a cached 303 would pin one upload's answer (docs/facts.md §3)
    return resp


@bp.get("/jobs/<key>")
def job(key: str) -> Response:
    """A job's state, or 303 to its result once stored. Never cached: it changes."""
    if not is_valid_key(key):
        raise InvalidResultKey()
    svc = service()
    if svc.results.exists(key, RESULT):
        resp = jsonify({"key": key, "status": "done", "location": f"/results/{key}"})
        resp.status_code = 303
        resp.headers["Location"] = f"/results/{key}"
    else:
        if svc.queue is None:
            raise QueueUnavailable("recognition needs Redis (OCR_REDIS_URL is empty)")
        state = svc.queue.state(key)
        if state is None:
            raise ResultNotFound("no job and no result with this key")
        if state.status == "done":  # finished a moment ago: storage was checked just before
            state = JobState("running")
        resp = jsonify({"key": key, "status": state.status, "position": state.position,
                        "error": state.error})
        if state.status != "failed":
            resp.headers["Retry-After"] = "1"
    resp.headers["Cache-Control"] = NO_STORE
    return resp


def _batch_files() -> list[tuple[str, bytes]]:
    """(name, bytes) of a batch: several multipart `image`/`file` fields, or one ZIP (a field
    or the raw body)."""
    svc = service()
    limits = batches.Limits(svc.settings.batch_max_items, svc.settings.max_upload_bytes,
                            svc.settings.batch_max_bytes)
    ctype = (request.mimetype or "").lower()
    if ctype == "multipart/form-data":
        fields = request.files.getlist("image") + request.files.getlist("file") + request.files.getlist("zip")
        files = [(f.filename or f"item-{n + 1}", f.read(svc.settings.max_upload_bytes + 1))
                 for n, f in enumerate(fields)]
    elif ctype in ("application/zip", "application/x-zip-compressed"):
        files = [("upload.zip", request.get_data(cache=False))]
    else:
        raise UnsupportedImage("send the batch as multipart `image` fields or one ZIP (multipart or "
                               f"a raw application/zip body) (got {ctype or 'none'})")
    if not files:
        raise EmptyUpload("a batch needs `image` fields or a ZIP")
    if len(files) == 1 and files[0][1][:4] == b"PK\x03\x04":
        return batches.read_zip(files[0][1], limits)
    if len(files) > limits.max_items:
        raise PayloadTooLarge(f"a batch holds at most {limits.max_items} images")
    for name, data in files:
        if len(data) > limits.max_item_bytes:
            raise PayloadTooLarge(f"{name}: uploads are limited to {limits.max_item_bytes} bytes")
    return files


@bp.post("/ocr/batch")
def batch_upload() -> Response:
    """Queue every item (deduplicated like single uploads); 202 with the batch's location."""
    svc = service()
    if svc.queue is None:
        raise QueueUnavailable("batches need Redis (OCR_REDIS_URL is empty)")
    try:
        charge = limits.check_upload()  # the same key and budget as single uploads; each item pays
        files = _batch_files()
    except OriginError as exc:
        metrics.REJECTED.labels(exc.code).inc()
        raise
    items = []
    for name, data in files:
        try:
            outcome = svc.submit(data, wait=False, charge=charge)
            items.append({"name": name, "key": outcome.key})
        except (QueueUnavailable, StorageDown):
            raise  # the whole batch waits for the service, not item by item
        except OriginError as exc:  # this item is bad input: say so, keep the others
            metrics.REJECTED.labels(exc.code).inc()
            items.append({"name": name, "key": None, **batches.item_error(exc)})  # type: ignore[dict-item]
    batch_id = batches.new_id()
    batches.BatchStore(svc.queue.connection).save(batch_id, items)
    return _accepted(f"/batches/{batch_id}", {"id": batch_id, "items": len(items)})


@bp.get("/batches/<batch_id>")
def batch_status(batch_id: str) -> Response:
    """Each item's name, status and result location (`done` once its result is stored)."""
    svc = service()
    if not batches.is_valid_id(batch_id):
        raise BadRequest("malformed batch id")
    if svc.queue is None:
        raise QueueUnavailable("batches need Redis (OCR_REDIS_URL is empty)")
    doc = batches.BatchStore(svc.queue.connection).load(batch_id)
    if doc is None:
        raise ResultNotFound("no batch with this id (batches are kept 7 days)")
    items = []
    for item in doc["items"]:
        key = item.get("key")
        if key is None:
            items.append({"name": item["name"], "status": "rejected", "code": item.get("code"),
                          "error": item.get("error")})
            continue
        entry = {"name": item["name"], "key": key, "result": f"/results/{key}"}
        if svc.results.exists(key, RESULT):
            entry["status"] = "done"
        else:
            state = svc.queue.state(key)
            entry["status"] = "failed" if state is None else ("running" if state.status == "done" else state.status)
            entry["job"] = f"/jobs/{key}"
            if state is not None and state.error:
                entry["error"] = state.error
        items.append(entry)
    counts: dict[str, int] = {}
    for entry in items:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    pending = counts.get("queued", 0) + counts.get("running", 0)
    resp = jsonify({"id": batch_id, "status": "running" if pending else "done", "counts": counts,
                    "items": items})
    if pending:
        resp.headers["Retry-After"] = "1"
    resp.headers["Cache-Control"] = NO_STORE
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
    return resp.make_conditional(request)  # type: ignore[return-value]  # returns self (a flask Response)


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
            checks["redis"] = ("degraded: Redis does not answer (stored results and exact re-uploads are "
                               "served; new images wait)")
    # The model runs in the queue workers: reported (new images wait for one), not required
    # (stored results are still served without any worker).
    identity = svc.identity()
    checks["model"] = (f"ok {identity.name} {identity.version}" if identity
                       else "waiting: no queue worker has registered")
    resp = jsonify({"status": "ready" if ready else "unready", "checks": checks,
                    "namespace": identity.namespace if identity else None})
    resp.status_code = 200 if ready else 503
    resp.headers["Cache-Control"] = NO_STORE
    return resp


@bp.get("/metrics")
def metrics_view() -> Response:
    svc = service()
    stats = None
    if svc.queue is not None:
        try:
            stats = svc.queue.stats()
        except QueueUnavailable:
            pass  # counted in ocr_redis_errors_total; the process metrics still answer
    body, ctype = metrics.render(stats)
    resp = Response(body, content_type=ctype)
    resp.headers["Cache-Control"] = NO_STORE
    return resp
