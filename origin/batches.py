"""Batches: several images (multipart fields) or one ZIP, each item deduplicated and queued like
a single upload; the batch itself is a short JSON document in Redis listing its items' keys.

ZIPs are untrusted: entries are read with hard limits on their count, each one's size, the
total uncompressed size and the compression ratio (declared sizes can lie, so the limits apply
to the bytes actually inflated); nested archives, directories' `..` and absolute names are
refused with a 4xx before anything is queued.
"""
from __future__ import annotations

import io
import json
import logging
import posixpath
import secrets
import time
import zipfile
from dataclasses import dataclass
from typing import Any

import redis

from cache import redis_keys

from .errors import BadRequest, OriginError, PayloadTooLarge, QueueUnavailable

logger = logging.getLogger(__name__)

BATCH_TTL_S = 7 * 24 * 3600   # as long as a CDN keeps results
MAX_RATIO = 200               # uncompressed / compressed per entry; text scans compress ~10-50x
ARCHIVE_SUFFIXES = (".zip", ".jar", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz")
ID_ALPHABET = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class UnsafeArchive(BadRequest):
    """The ZIP has an entry that is refused (a path outside the archive, a nested archive)."""
    status, code = 400, "unsafe_archive"


class ArchiveTooLarge(PayloadTooLarge):
    """The ZIP inflates to more than the limits allow (entries, bytes or compression ratio)."""
    status, code = 413, "archive_too_large"


@dataclass(frozen=True)
class Limits:
    max_items: int
    max_item_bytes: int
    max_total_bytes: int


def safe_name(name: str) -> str:
    """The entry's name if it stays inside the archive; UnsafeArchive otherwise."""
    if "\\" in name or "\0" in name:
        raise UnsafeArchive(f"entry {name!r}: backslashes and NUL are not allowed in names")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"entry {name!r}: absolute paths are not allowed")
    if ".." in name.split("/"):
        raise UnsafeArchive(f"entry {name!r}: `..` is not allowed")
    return posixpath.normpath(name)


def read_zip(data: bytes, limits: Limits) -> list[tuple[str, bytes]]:
    """(name, bytes) of each file in the ZIP, all limits enforced on what is actually inflated."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise BadRequest(f"the ZIP could not be read: {exc}") from exc
    files = [i for i in infos if not i.is_dir()]
    for info in infos:
        safe_name(info.filename)
    if len(files) > limits.max_items:
        raise ArchiveTooLarge(f"the ZIP has {len(files)} files, more than the limit of {limits.max_items}")
    out: list[tuple[str, bytes]] = []
    total = 0
    for info in files:
        name = safe_name(info.filename)
        if name.lower().endswith(ARCHIVE_SUFFIXES):
            raise UnsafeArchive(f"entry {name!r}: nested archives are not accepted")
        try:
            with archive.open(info) as f:
                # read one byte past each limit: a lying header cannot make us inflate more
                body = f.read(min(limits.max_item_bytes, limits.max_total_bytes - total) + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            raise BadRequest(f"entry {name!r} could not be read: {exc}") from exc
        if len(body) > limits.max_item_bytes:
            raise ArchiveTooLarge(f"entry {name!r} inflates to more than {limits.max_item_bytes} bytes")
        total += len(body)
        if total > limits.max_total_bytes:
            raise ArchiveTooLarge(f"the ZIP inflates to more than {limits.max_total_bytes} bytes")
        if info.compress_size and len(body) > MAX_RATIO * info.compress_size and len(body) > 1 << 20:
            raise ArchiveTooLarge(f"entry {name!r} inflates {len(body) // info.compress_size}x: a zip bomb?")
        if body[:4] == b"PK\x03\x04":
            raise UnsafeArchive(f"entry {name!r}: nested archives are not accepted")
        out.append((name, body))
    if not out:
        raise BadRequest("the ZIP holds no files")
    return out


def new_id() -> str:
    return secrets.token_urlsafe(16)


def is_valid_id(batch_id: str) -> bool:
    return 16 <= len(batch_id) <= 32 and set(batch_id) <= ID_ALPHABET


class BatchStore:
    """Batch documents in Redis (`ocr:v2:batch:{id}`), kept BATCH_TTL_S."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def save(self, batch_id: str, items: list[dict[str, Any]]) -> None:
        doc = {"id": batch_id, "created_at": time.time(), "items": items}
        try:
            self.connection.set(redis_keys.batch(batch_id), json.dumps(doc, ensure_ascii=False), ex=BATCH_TTL_S)
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc

    def load(self, batch_id: str) -> dict[str, Any] | None:
        try:
            raw = self.connection.get(redis_keys.batch(batch_id))
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc
        return json.loads(raw) if raw is not None else None


def item_error(exc: OriginError) -> dict[str, Any]:
    """A refused item's entry fields: the error code and its message (the item's HTTP status, had
    it been uploaded alone, in `http_status`)."""
    return {"code": exc.code, "error": exc.message, "http_status": exc.status}
