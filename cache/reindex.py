"""Rebuild the Redis near-duplicate index from storage (the source of truth).

Indexes what the upload flow indexes: every complete result (result.json present) except pages
over verify.MAX_PIXELS, which have no signature and are reused only when pixel-identical.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Iterator

from .fingerprint import fine_hash, parse_phash
from .index import RedisResultIndex
from .keys import key_namespace
from .store import RESULT, SIGNATURE, ResultStore
from . import verify

logger = logging.getLogger(__name__)


def _fine(store: ResultStore, key: str) -> bytes:
    """The fine hash of a result's stored signature (the page in greyscale at its resolution:
    the same hash as its upload's), b"" when it cannot be read."""
    data = store.get(key, SIGNATURE)
    if data is None:
        return b""
    try:
        return fine_hash(verify.decode_signature(data))
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's ways of saying "corrupt"
        logger.warning("reindex: no fine hash key=%s reason=%s", key, exc)
        return b""


def _entries(store: ResultStore, stats: dict[str, int]) -> Iterator[tuple[str, str, int, float, bytes]]:
    for key in store.iter_keys():
        body = store.get(key, RESULT)
        try:
            if body is None:
                raise ValueError("result.json vanished")
            doc = json.loads(body)
            phash = parse_phash(doc["phash"])
            created = datetime.fromisoformat(doc["created_at"]).timestamp()
            pixels = int(doc.get("width", 0)) * int(doc.get("height", 0))
        except (TypeError, KeyError, ValueError) as exc:
            stats["skipped"] += 1
            logger.warning("reindex skipped key=%s reason=%s", key, exc)
            continue
        if pixels > verify.MAX_PIXELS:
            stats["exact_only"] += 1
            continue
        stats["indexed"] += 1
        yield key_namespace(key), key, phash, created, _fine(store, key)


def reindex(store: ResultStore, index: RedisResultIndex, *, clear: bool = False) -> dict[str, int]:
    """Record every complete result of `store` in `index`; idempotent. Returns counts."""
    stats = {"indexed": 0, "skipped": 0, "exact_only": 0, "cleared": 0}
    if clear:
        stats["cleared"] = index.clear()
    index.record_many(_entries(store, stats))
    logger.info("reindex done store=%r indexed=%d skipped=%d exact_only=%d", store, stats["indexed"],
                stats["skipped"], stats["exact_only"])
    return stats
