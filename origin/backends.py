"""The upload flow's view of Redis and storage: failures translated and counted in one place.

    DegradingIndex  Redis is optional for dedup: every failure is logged, counted and answered
                    with the degraded value (no candidates, nothing recorded), so the flow never
                    sees an IndexUnavailable. No Redis configured = always degraded. (Single
                    flight is the job queue's: one RQ job per result key, origin/jobs.py.)
    ResultFiles     storage is the source of truth: a StorageUnavailable becomes the 503
                    StorageDown every caller would have raised, counted per operation.
"""
from __future__ import annotations

import logging

from cache.errors import IndexUnavailable, StorageUnavailable
from cache.index import Candidate, ResultIndex
from cache.store import ResultStore

from . import metrics
from .errors import StorageDown

logger = logging.getLogger(__name__)


RedisIndex = ResultIndex  # the near-duplicate index (RedisResultIndex provides it)


class DegradingIndex:
    """RedisIndex (or None) whose failures degrade the answer instead of failing the upload."""

    def __init__(self, index: RedisIndex | None) -> None:
        self.inner = index

    def __repr__(self) -> str:
        return repr(self.inner) if self.inner is not None else "<no index>"

    @property
    def enabled(self) -> bool:
        return self.inner is not None

    def _failed(self, op: str, exc: IndexUnavailable) -> None:
        metrics.REDIS_ERRORS.labels(op).inc()
        logger.warning("redis unavailable op=%s dedup=skipped error=%s", op, exc)

    def ping(self) -> None:
        """Raise IndexUnavailable unless Redis answers (readiness reports it)."""
        if self.inner is None:
            raise IndexUnavailable("no index configured")
        self.inner.ping()

    def candidates(self, namespace: str, phash: int, *, limit: int, unstable: int = 0,
                   fine: bytes = b"") -> list[Candidate]:
        if self.inner is None:
            return []
        try:
            return self.inner.candidates(namespace, phash, limit=limit, unstable=unstable, fine=fine)
        except IndexUnavailable as exc:
            self._failed("candidates", exc)
            return []

    def record(self, namespace: str, key: str, phash: int, *, created_at: float, fine: bytes = b"") -> None:
        if self.inner is None:
            return
        try:
            self.inner.record(namespace, key, phash, created_at=created_at, fine=fine)
        except IndexUnavailable as exc:
            self._failed("record", exc)  # `ocr-origin reindex` restores it from storage

    def key_for_bytes(self, namespace: str, sha256_hex: str) -> str | None:
        if self.inner is None:
            return None
        try:
            return self.inner.key_for_bytes(namespace, sha256_hex)
        except IndexUnavailable as exc:
            self._failed("bytes_get", exc)
            return None

    def record_bytes(self, namespace: str, sha256_hex: str, key: str) -> None:
        if self.inner is None:
            return
        try:
            self.inner.record_bytes(namespace, sha256_hex, key)
        except IndexUnavailable as exc:
            self._failed("bytes_set", exc)  # the next identical upload is decoded: nothing lost


class ResultFiles:
    """ResultStore whose failures are the origin's 503 StorageDown, counted per operation."""

    def __init__(self, store: ResultStore) -> None:
        self.inner = store

    def __repr__(self) -> str:
        return repr(self.inner)

    def failed(self, op: str, exc: StorageUnavailable) -> StorageDown:
        metrics.STORAGE_ERRORS.labels(op).inc()
        logger.error("storage failed op=%s error=%s", op, exc)
        return StorageDown()

    def get(self, key: str, name: str) -> bytes | None:
        try:
            return self.inner.get(key, name)
        except StorageUnavailable as exc:
            raise self.failed("get", exc) from exc

    def exists(self, key: str, name: str) -> bool:
        try:
            return self.inner.exists(key, name)
        except StorageUnavailable as exc:
            raise self.failed("exists", exc) from exc

    def put(self, key: str, name: str, body: bytes, *, content_type: str) -> bool:
        try:
            return self.inner.put(key, name, body, content_type=content_type)
        except StorageUnavailable as exc:
            raise self.failed("put", exc) from exc
