"""The API contract: an OpenAPI 3.1 document of every public endpoint, served at /openapi.json and
rendered at /docs. Built from the running app, so it names the real limits and lists an operation
only when its route exists (the job and batch endpoints appear with the queue). tests/unit/origin/
test_contract.py checks that every route is documented and every response matches its schema.
"""
from __future__ import annotations

from typing import Any

from flask import Flask

from .units import human_bytes, human_pixels

JSON = "application/json"
KEY_PATTERN = "^[a-z2-7]{32}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


POINT = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
BOX = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
       "description": "[x, y, width, height] in pixels of the uploaded image"}
POLYGON = {"type": "array", "items": POINT, "minItems": 3,
           "description": "corners [x, y] clockwise from the top left, in pixels of the uploaded image"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "The one error shape, from the origin and from nginx alike.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "code", "message"],
                "properties": {
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "code": {"type": "string", "pattern": "^[a-z_]+$",
                             "examples": ["payload_too_large", "unsupported_image", "not_found"]},
                    "message": {"type": "string", "description": "for people; limits in human units"},
                },
            },
            "request_id": {"type": ["string", "null"]},
        },
    },
    "Word": {
        "type": "object",
        "required": ["text"],
        "properties": {
            "text": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "box": BOX,
            "polygon": POLYGON,
        },
    },
    "Line": {
        "type": "object",
        "required": ["text", "confidence", "box"],
        "properties": {
            "text": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                           "description": "exp(mean log-probability of the decoded path)"},
            "box": BOX,
            "polygon": POLYGON,
            "words": {"type": "array", "items": _ref("Word"), "description": "when the recognizer gives them"},
            "row": {"type": "integer", "minimum": 0, "description": "table cell row, for tables"},
            "column": {"type": "integer", "minimum": 0, "description": "table cell column, for tables"},
        },
    },
    "Result": {
        "type": "object",
        "required": ["key", "text", "lines", "width", "height", "model", "elapsed_ms", "created_at"],
        "properties": {
            "key": {"type": "string", "pattern": KEY_PATTERN},
            "text": {"type": "string", "description": "the lines' text joined with \\n, in reading order; "
                                                       "cells side by side on one row joined with a tab"},
            "lines": {"type": "array", "items": _ref("Line")},
            "phash": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "of the uploaded bytes"},
            "pixel_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "model": {"type": "object", "required": ["name", "version"],
                      "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                     "namespace": {"type": "string"}}},
            "finder": {"type": "string", "description": "the line finder: classical (documents, "
                                                         "screenshots) or learned (photos)"},
            "rotation": {"type": "number", "enum": [0, 90, 180, 270],
                         "description": "the clockwise turn, in degrees, that made the upload upright "
                                        "before reading; boxes stay in the upload's coordinates"},
            "skew": {"type": "number", "minimum": -12, "maximum": 12,
                     "description": "the tilt, in degrees, of the upright page that was undone before its "
                                    "lines were found (documents; positive when the lines ran down to the "
                                    "right); boxes stay in the upload's coordinates"},
            "elapsed_ms": {"type": "number", "minimum": 0,
                           "description": "recognition time when the result was made (not of a reuse)"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "UploadRedirect": {
        "type": "object",
        "required": ["key", "location"],
        "properties": {"key": {"type": "string", "pattern": KEY_PATTERN},
                       "location": {"type": "string", "pattern": "^/results/[a-z2-7]{32}$"}},
    },
    "JsonUpload": {
        "type": "object",
        "required": ["image"],
        "properties": {"image": {"type": "string", "contentEncoding": "base64",
                                 "description": "the image file in base64 (a data: URL prefix is allowed)"}},
    },
    "Accepted": {
        "type": "object",
        "description": "A queued upload: poll `location` (honour Retry-After) until it redirects to the result.",
        "required": ["key", "status", "location"],
        "properties": {"key": {"type": "string", "pattern": KEY_PATTERN}, "status": {"const": "queued"},
                       "location": {"type": "string", "pattern": "^/jobs/[a-z2-7]{32}$"},
                       "result": {"type": "string", "pattern": "^/results/[a-z2-7]{32}$"}},
    },
    "Job": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "key": {"type": "string", "pattern": KEY_PATTERN},
            "status": {"type": "string", "examples": ["queued", "running", "failed", "done"]},
            "position": {"type": ["integer", "null"], "minimum": 0},
            "error": {"type": ["string", "null"]},
            "location": {"type": "string"},
        },
    },
    "BatchAccepted": {
        "type": "object",
        "required": ["id", "location", "items"],
        "properties": {"id": {"type": "string"}, "location": {"type": "string"},
                       "items": {"type": "integer", "minimum": 0}},
    },
    "Batch": {
        "type": "object",
        "required": ["id", "status", "items"],
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["running", "done"]},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "items": {"type": "array", "items": {
                "type": "object", "required": ["name", "status"],
                "properties": {"name": {"type": "string"}, "status": {"type": "string"},
                               "key": {"type": "string", "pattern": KEY_PATTERN},
                               "result": {"type": "string"}, "job": {"type": "string"},
                               "error": {"type": ["string", "null"]}}}},
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Ready": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {"status": {"enum": ["ready", "unready"]},
                       "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                       "namespace": {"type": "string"}},
    },
}

KEY_PARAM = {"name": "key", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": KEY_PATTERN},
             "description": "32 characters of a-z and 2-7, from an upload's Location"}
HTML = {"text/html": {"schema": {"type": "string"}}}
CACHE_HEADERS = {"Cache-Control": _header("public, max-age=604800, immutable"),
                 "ETag": _header("strong validator"),
                 "X-Cache-Status": _header("through nginx: MISS, HIT, STALE, UPDATING, EXPIRED, REVALIDATED")}
UPLOAD_HEADERS = {
    "Location": _header("/results/<key>"),
    "X-OCR-Cache": _header("MISS: recognition ran; HIT: an existing result was reused",
                           {"enum": ["HIT", "MISS"]}),
    "X-OCR-Match": _header("how: exact (same pixels), near (verified near duplicate), waited "
                           "(an identical upload finished first), miss",
                           {"enum": ["exact", "near", "waited", "miss"]}),
}


def _upload_op(max_bytes: int, max_pixels: int) -> dict[str, Any]:
    limits = f"Up to {human_bytes(max_bytes)} and {human_pixels(max_pixels)}."
    image = {"type": "string", "contentMediaType": "image/*"}
    return {
        "summary": "Read the text of an image",
        "operationId": "upload",
        "description": ("Send the image as multipart field `image` (or `file`), as the raw body with "
                        "an image Content-Type, or as JSON `{\"image\": \"<base64>\"}`. " + limits +
                        " The same pixels always give the same key; an identical or verified "
                        "near-duplicate upload reuses the stored result without recognition."),
        "parameters": [{"name": "format", "in": "query", "required": False,
                        "schema": {"enum": ["json"]},
                        "description": "json: answer with the result itself (also `Accept: application/json`)"}],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {"image": image, "file": image}}},
            "application/json": {"schema": _ref("JsonUpload")},
            "image/png": {"schema": image}, "image/jpeg": {"schema": image}, "image/webp": {"schema": image},
            "image/bmp": {"schema": image}, "image/tiff": {"schema": image}, "image/gif": {"schema": image},
            "application/octet-stream": {"schema": image},
            "application/pdf": {"schema": image},
        }},
        "responses": {
            "200": _json(_ref("Result"), "with ?format=json: an earlier result reused (HIT)", UPLOAD_HEADERS),
            "201": _json(_ref("Result"), "with ?format=json: recognised now (MISS)", UPLOAD_HEADERS),
            "202": _json(_ref("Accepted"), "queued (or `Prefer: respond-async`): follow Location "
                         "(/jobs/<key>) until it redirects to the result",
                         {"Location": _header("/jobs/<key>"), "Retry-After": _header("seconds")}),
            "303": _json(_ref("UploadRedirect"), "the result is at Location", UPLOAD_HEADERS),
            "400": _error("empty, corrupt or malformed upload (bad base64, no `image` field)"),
            "413": _error(f"larger than {human_bytes(max_bytes)} or {human_pixels(max_pixels)}"),
            "415": _error("not an image we can decode (PNG, JPEG, WebP, BMP, TIFF, GIF)"),
            "401": _error("API keys are on (OCR_API_KEYS_FILE) and none or an unknown one was sent"),
            "429": _error("over this client's upload rate (an image of many pixels counts as several "
                          "uploads); retry after Retry-After seconds"),
            "503": _error("storage or the job queue unavailable, or recognition failed; try again (Retry-After)"),
        },
    }


def _paths(max_bytes: int, max_pixels: int) -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "/ocr": {"post": _upload_op(max_bytes, max_pixels)},
        "/results/{key}": {"get": {
            "summary": "A result", "operationId": "getResult", "parameters": [KEY_PARAM],
            "responses": {"200": _json(_ref("Result"), "the result; immutable, cached a week", CACHE_HEADERS),
                          "304": {"description": "not modified (If-None-Match)"},
                          "400": _error("malformed key"), "404": _error("no result with this key"),
                          "503": _error("storage unavailable")}}},
        "/results/{key}/thumbnail.jpg": {"get": {
            "summary": "The result's thumbnail (longer side at most 320 px)", "operationId": "getThumbnail",
            "parameters": [KEY_PARAM],
            "responses": {"200": {"description": "JPEG", "headers": CACHE_HEADERS,
                                  "content": {"image/jpeg": {"schema": {
                                      "type": "string", "contentMediaType": "image/jpeg"}}}},
                          "304": {"description": "not modified"},
                          "400": _error("malformed key"), "404": _error("no result with this key"),
                          "503": _error("storage unavailable")}}},
        "/jobs/{key}": {"get": {
            "summary": "A queued recognition", "operationId": "getJob", "parameters": [KEY_PARAM],
            "responses": {"200": _json(_ref("Job"), "queued, running or failed (Retry-After while pending)"),
                          "303": _json(_ref("Job"), "done: the result is at Location",
                                       {"Location": _header("/results/<key>")}),
                          "400": _error("malformed key"), "404": _error("no job and no result with this key"),
                          "503": _error("the queue (Redis) or storage is unavailable")}}},
        "/ocr/batch": {"post": {
            "summary": "Queue several images (multipart fields `image`/`file`, or one ZIP)",
            "operationId": "uploadBatch",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}},
            "responses": {"202": _json(_ref("BatchAccepted"), "queued: follow Location (/batches/<id>)"),
                          "400": _error("malformed batch"), "413": _error("too large"),
                          "415": _error("not images"),
                          "401": _error("API keys are on and none or an unknown one was sent"),
                          "429": _error("over this client's upload rate (every image counts)"),
                          "503": _error("the queue (Redis) is unavailable")}}},
        "/batches/{batch_id}": {"get": {
            "summary": "A batch's progress: each item's status and result", "operationId": "getBatch",
            "parameters": [{"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json(_ref("Batch"), "the batch's items"),
                          "400": _error("malformed batch id"), "404": _error("no such batch (kept 7 days)"),
                          "503": _error("the queue (Redis) is unavailable")}}},
        "/": {"get": {"summary": "The web app", "operationId": "indexPage",
                      "responses": {"200": {"description": "HTML", "content": HTML}}}},
        "/view/{key}": {"get": {
            "summary": "A shareable page showing one result", "operationId": "viewPage", "parameters": [KEY_PARAM],
            "responses": {"200": {"description": "HTML (loads /results/{key} itself)", "content": HTML},
                          "400": _error("malformed key")}}},
        "/docs": {"get": {"summary": "This document, readable", "operationId": "docsPage",
                          "responses": {"200": {"description": "HTML", "content": HTML}}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {JSON: {"schema": {"type": "object"}}}}}}},
        "/static/{name}": {"get": {
            "summary": "A web app asset, named by its content hash (cached a year, immutable)",
            "operationId": "staticAsset",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "e.g. app.3f2a9c1b0d.js, as the pages name it"}],
            "responses": {"200": {"description": "the asset",
                                  "content": {"*/*": {"schema": {"type": "string"}}}},
                          "404": _error("no asset by that name and hash")}}},
        "/favicon.ico": {"get": {"summary": "Redirects to the versioned icon", "operationId": "favicon",
                                 "responses": {"301": {"description": "the icon is at Location"}}}},
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz",
                             "responses": {"200": _json(_ref("Health"), "the process answers")}}},
        "/readyz": {"get": {"summary": "Readiness: storage and model checked, Redis reported",
                            "operationId": "readyz",
                            "responses": {"200": _json(_ref("Ready"), "ready"),
                                          "503": _json(_ref("Ready"), "storage down")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics of all workers", "operationId": "metrics",
                             "responses": {"200": {"description": "Prometheus text format", "content": text}}}},
    }


def flask_path(path: str) -> str:
    """/results/{key} -> /results/<key> (how Flask writes a route)."""
    return path.replace("{", "<").replace("}", ">")


# Answered by nginx itself, so never a Flask route; documented all the same.
NGINX_PATHS: dict[str, Any] = {
    "/nginx-health": {"get": {"summary": "nginx is up (answered by nginx, never proxied)",
                              "operationId": "nginxHealth",
                              "responses": {"200": {"description": "ok",
                                                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
}


def build_spec(app: Flask) -> dict[str, Any]:
    """The document for this app: only operations whose route exists, with its configured limits."""
    svc = app.extensions["ocr"]
    routes = {(rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods or ()}
    paths: dict[str, Any] = {}
    for path, ops in _paths(svc.settings.max_upload_bytes, svc.settings.max_pixels).items():
        kept = {m: op for m, op in ops.items() if (flask_path(path), m.upper()) in routes}
        if kept:
            paths[path] = kept
    paths.update(NGINX_PATHS)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ocr-origin", "version": (svc.identity().version if svc.identity() else "unknown"),
                 "summary": "Upload an image, get a content-addressed, cacheable result of its text.",
                 "description": ("Results are immutable and content-addressed: a result URL never "
                                 "changes its answer, so CDNs cache it for a week. Every error is "
                                 "JSON in one shape (`Error`), also those nginx produces."),
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
