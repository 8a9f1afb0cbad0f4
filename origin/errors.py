"""Errors the origin turns into JSON responses; one handler for all of them.

    OriginError (500 internal_error)
    ├── BadRequest (400 bad_request)
    │   ├── EmptyUpload (400 empty_upload)
    │   ├── InvalidResultKey (400 invalid_key)
    │   └── CorruptImage (400 corrupt_image)
    ├── Unauthorized (401 unauthorized)
    ├── ResultNotFound (404 not_found)
    ├── PayloadTooLarge (413 payload_too_large)
    │   └── ImageTooLarge (413 image_too_large)
    ├── UnsupportedImage (415 unsupported_image)
    ├── TooManyRequests (429 rate_limited, with Retry-After)
    └── ServiceUnavailable (503 unavailable)
        ├── StorageDown (503 storage_unavailable)
        ├── ModelUnavailable (503 model_unavailable)
        ├── QueueUnavailable (503 queue_unavailable, Retry-After)
        └── RecognitionFailed (503 recognition_failed, Retry-After: the next upload retries)

Bad input is always a 4xx: nothing a client uploads can produce a 500.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import metrics

logger = logging.getLogger(__name__)


class OriginError(Exception):
    """Base of the errors the origin turns into JSON responses."""
    status = 500
    code = "internal_error"
    retry_after: int | None = None  # seconds, sent as Retry-After when set

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.__doc__ or self.code)
        self.message = message or (self.__doc__ or self.code).strip()
        self.headers = headers or {}  # added to the JSON response (Retry-After, WWW-Authenticate)


class BadRequest(OriginError):
    """The request is malformed."""
    status, code = 400, "bad_request"


class EmptyUpload(BadRequest):
    """The upload is empty: send the image as multipart field `image` or as the raw body."""
    status, code = 400, "empty_upload"


class InvalidResultKey(BadRequest):
    """Result keys are 32 characters of a-z and 2-7."""
    status, code = 400, "invalid_key"


class CorruptImage(BadRequest):
    """The image is truncated or corrupt."""
    status, code = 400, "corrupt_image"


class Unauthorized(OriginError):
    """Uploads need an API key: send it as `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    status, code = 401, "unauthorized"


class ResultNotFound(OriginError):
    """No result with this key."""
    status, code = 404, "not_found"


class PayloadTooLarge(OriginError):
    """The upload is larger than the limit."""
    status, code = 413, "payload_too_large"


class ImageTooLarge(PayloadTooLarge):
    """The image has more pixels than the limit."""
    status, code = 413, "image_too_large"


class UnsupportedImage(OriginError):
    """The upload is not an image we can decode (PNG, JPEG, WebP, BMP, TIFF, GIF)."""
    status, code = 415, "unsupported_image"


class TooManyRequests(OriginError):
    """Too many uploads from this client; retry after the number of seconds in Retry-After."""
    status, code = 429, "rate_limited"


class ServiceUnavailable(OriginError):
    """The service is temporarily unavailable."""
    status, code = 503, "unavailable"


class StorageDown(ServiceUnavailable):
    """Result storage is unavailable; try again later."""
    status, code = 503, "storage_unavailable"


class ModelUnavailable(ServiceUnavailable):
    """The recognizer is not loaded."""
    status, code = 503, "model_unavailable"


class QueueUnavailable(ServiceUnavailable):
    """Recognition is unavailable (the job queue cannot be reached); cached results still are."""
    status, code = 503, "queue_unavailable"
    retry_after = 10


class RecognitionFailed(ServiceUnavailable):
    """Recognition of this upload failed; uploading it again retries."""
    status, code = 503, "recognition_failed"
    retry_after = 1


def error_cache_control(status: int, method: str, max_age: int = 60) -> str:
    """Errors never get the results' week: 5xx, 429 and anything on POST are not stored; a GET
    4xx (unknown or malformed key) is cacheable for `max_age` (OCR_ERROR_MAX_AGE, short) so a
    CDN absorbs repeats without pinning it."""
    if status >= 500 or status == 429 or method not in ("GET", "HEAD") or max_age <= 0:
        return "no-store"
    return f"public, max-age={max_age}"


def error_response(status: int, code: str, message: str) -> Response:
    resp = jsonify({"error": {"status": status, "code": code, "message": message},
                    "request_id": g.get("request_id")})
    resp.status_code = status
    svc = current_app.extensions.get("ocr")
    max_age = svc.settings.error_max_age if svc is not None else 60
    resp.headers["Cache-Control"] = error_cache_control(status, request.method, max_age)
    return resp


def init_app(app: Flask) -> None:
    """Register the one JSON error handler for OriginError, HTTP errors and anything else."""

    @app.errorhandler(OriginError)
    def _origin_error(exc: OriginError) -> Response:
        if exc.status >= 500:
            logger.error("request failed code=%s message=%s", exc.code, exc.message)
        else:
            logger.info("request rejected code=%s message=%s", exc.code, exc.message)
        if exc.status >= 500:
            metrics.SERVER_ERRORS.labels(exc.code).inc()
        resp = error_response(exc.status, exc.code, exc.message)
        if exc.retry_after is not None:
            resp.headers["Retry-After"] = str(exc.retry_after)
        resp.headers.update(exc.headers)
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            status, (exc.name or "error").lower().replace(" ", "_"))
        resp = error_response(status, code, exc.description or exc.name)
        if status == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        metrics.SERVER_ERRORS.labels("internal_error").inc()
        return error_response(500, "internal_error", "internal error")
