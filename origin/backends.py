"""The upload flow's view of Redis and storage: failures translated and counted in one place.

    DegradingIndex  Redis is optional: every failure is logged, counted and answered with the
                    degraded value (no candidates, lock `UNAVAILABLE`, nothing recorded), so the
                    flow never sees an IndexUnavailable. No Redis configured = always degraded.
    ResultFiles     storage is the source of truth: a StorageUnavailable becomes the 503
                    StorageDown every caller would have raised, counted per operation.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from cache.errors import IndexUnavailable, StorageUnavailable
from cache.index import Candidate, Locker, ResultIndex
from cache.store import ResultStore

from . import metrics
from .errors import StorageDown

logger = logging.getLogger(__name__)


class RedisIndex(ResultIndex, Locker, Protocol):
    """The index and the single-flight locks (RedisResultIndex provides both)."""


class LockState(enum.Enum):
    ACQUIRED = "acquired"        # we lead: recognise, then unlock with the token
    HELD = "held"                # another worker leads: wait for its result
    UNAVAILABLE = "unavailable"  # no Redis: nobody can coordinate, recognise without waiting


@dataclass(frozen=True)
class Lock:
    state: LockState
    token: str | None = None     # set when ACQUIRED


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

    def candidates(self, namespace: str, phash: int, *, limit: int, unstable: int = 0) -> list[Candidate]:
        if self.inner is None:
            return []
        try:
            return self.inner.candidates(namespace, phash, limit=limit, unstable=unstable)
        except IndexUnavailable as exc:
            self._failed("candidates", exc)
            return []

    def record(self, namespace: str, key: str, phash: int, *, created_at: float) -> None:
        if self.inner is None:
            return
        try:
            self.inner.record(namespace, key, phash, created_at=created_at)
        except IndexUnavailable as exc:
            self._failed("record", exc)  # `ocr-origin reindex` restores it from storage

    def try_lock(self, namespace: str, digest: str, *, ttl_ms: int) -> Lock:
        if self.inner is None:
            return Lock(LockState.UNAVAILABLE)
        try:
            token = self.inner.try_lock(namespace, digest, ttl_ms=ttl_ms)
        except IndexUnavailable as exc:
            self._failed("lock", exc)
            return Lock(LockState.UNAVAILABLE)
        return Lock(LockState.HELD) if token is None else Lock(LockState.ACQUIRED, token)

    def unlock(self, namespace: str, digest: str, lock: Lock) -> None:
        if self.inner is None or lock.token is None:
            return
        try:
            self.inner.unlock(namespace, digest, lock.token)
        except IndexUnavailable as exc:
            self._failed("unlock", exc)  # the lock expires after its TTL


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
