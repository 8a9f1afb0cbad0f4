"""The upload flow: decode → fingerprint → exact key → verified near duplicate → single flight →
recognise → store (source of truth) → index.

Reuse rule (README "Keys and reuse"): an upload reuses a stored result only if
  * its key exists in storage (same pixels, same model namespace), or
  * a stored result of the same model namespace has a pHash within `hamming_distance` AND the
    verifier (cache/verify.py) accepts it: same shape and scale, no faint ink, no local
    difference above its threshold.
Everything else runs the recognizer and gets its own key.
"""
from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Protocol, TypeVar

from PIL import Image

from cache import verify
from cache.errors import StorageUnavailable
from cache.fingerprint import Fingerprint, fingerprint
from cache.keys import KeyDeriver, is_valid_key, model_namespace
from cache.store import RESULT, SIGNATURE, THUMBNAIL, ResultStore

from . import metrics
from .backends import DegradingIndex, Lock, LockState, RedisIndex, ResultFiles
from .images import decode_image
from .settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

THUMBNAIL_SIZE = (320, 320)
__all__ = ["OcrService", "Outcome", "Recognizer", "RedisIndex", "make_thumbnail"]


class Recognizer(Protocol):
    """What the origin needs from ocr_core.Predictor."""
    model_name: str
    model_version: str

    def read(self, image: Any, *, single_line: bool = False) -> Any: ...


@dataclass(frozen=True)
class Outcome:
    key: str
    match: str                 # "exact" | "near" | "waited" | "miss"
    body: bytes | None = None  # the stored result JSON when this call wrote or read it

    @property
    def hit(self) -> bool:
        return self.match != "miss"


class OcrService:
    """Built once per worker by create_app; holds the recognizer, store, index and key deriver."""

    def __init__(self, settings: Settings, *, predictor: Recognizer, store: ResultStore,
                 index: RedisIndex | None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.predictor = predictor
        self.store = store                   # the raw store (readiness pings it)
        self.results = ResultFiles(store)    # what the flow and the views use: errors are 503s
        self.index = DegradingIndex(index)   # Redis failures degrade dedup, never the upload
        self.keys = KeyDeriver(settings.secret)
        self.namespace = model_namespace(predictor.model_name, predictor.model_version)
        self._clock = clock

    def storage(self, op: str, fn: Callable[[], T]) -> T:
        """Run `fn` (a call on the raw store) with storage errors translated. Prefer
        `self.results`, which does this for every call."""
        try:
            return fn()
        except StorageUnavailable as exc:
            raise self.results.failed(op, exc) from exc

    def _exists(self, key: str) -> bool:
        return self.results.exists(key, RESULT)

    # the flow --------------------------------------------------------------------------------
    def submit(self, data: bytes) -> Outcome:
        """Return the key of the result for these upload bytes, recognising only if needed."""
        decoded = decode_image(data, max_pixels=self.settings.max_pixels)
        metrics.UPLOADS.inc()
        image = decoded.image
        fp = fingerprint(image, data)
        key = self.keys.derive(self.namespace, fp.pixel_digest)
        if self._exists(key):
            return self._done(Outcome(key, "exact"), fp)
        near = self._near_duplicate(image, fp)
        if near is not None:
            return self._done(Outcome(near, "near"), fp)
        return self._done(self._recognise_once(image, fp, key), fp)

    def _done(self, outcome: Outcome, fp: Fingerprint) -> Outcome:
        metrics.DEDUP.labels("hit" if outcome.hit else "miss", outcome.match).inc()
        logger.info("upload done key=%s cache=%s match=%s phash=%s sha256=%s", outcome.key,
                    "HIT" if outcome.hit else "MISS", outcome.match, fp.phash_hex, fp.sha256[:16])
        return outcome

    def _near_duplicate(self, image: Image.Image, fp: Fingerprint) -> str | None:
        if not verify.can_match(image.width, image.height):
            return None  # larger than any stored signature can be: exact reuse only
        upload = verify.PreparedUpload(image)
        if upload.faint:
            logger.info("near-duplicate lookup skipped reason=faint content phash=%s", fp.phash_hex)
            return None  # no candidate could pass: save the lookup and the signature reads
        candidates = self.index.candidates(self.namespace, fp.phash, limit=self.settings.max_candidates,
                                           unstable=fp.unstable)
        for cand in candidates:
            # Redis is not trusted: a malformed key never reaches storage, and another model's
            # result is never served, whatever an index entry says.
            if not is_valid_key(cand.key) or not cand.key.startswith(self.namespace):
                logger.warning("near-duplicate candidate ignored key=%r reason=foreign or malformed", cand.key)
                continue
            sig_bytes = self.results.get(cand.key, SIGNATURE)
            if sig_bytes is None:
                continue  # index ahead of storage (deleted result): never trust the index alone
            try:
                signature = verify.decode_signature(sig_bytes)
            except (OSError, SyntaxError, ValueError) as exc:  # Pillow's ways of saying "corrupt"
                logger.error("near-duplicate candidate ignored key=%s reason=unreadable signature error=%s",
                             cand.key, exc)
                continue
            verdict = verify.compare(upload, signature)
            logger.info("near-duplicate candidate key=%s distance=%d score=%.1f same=%s reason=%s",
                        cand.key, cand.distance, verdict.score, verdict.same, verdict.reason)
            if verdict.same:
                return cand.key
            metrics.NEAR_REJECTED.inc()
        return None

    def _try_lock(self, fp: Fingerprint) -> Lock:
        return self.index.try_lock(self.namespace, fp.pixel_digest, ttl_ms=self.settings.lock_ttl_ms)

    def _recognise_once(self, image: Image.Image, fp: Fingerprint, key: str) -> Outcome:
        """Single flight on the pixel digest: one worker recognises, duplicates wait and reuse."""
        lock = self._try_lock(fp)
        if lock.state is LockState.HELD:
            deadline = time.monotonic() + self.settings.lock_wait_s
            delay = 0.02
            while lock.state is LockState.HELD and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 1.5, 0.25)
                if self._exists(key):
                    return Outcome(key, "waited")
                lock = self._try_lock(fp)  # the leader failed or its lock expired: we lead
            if lock.state is LockState.HELD:
                logger.warning("single flight wait timed out key=%s: recognising anyway", key)
        try:
            if lock.state is LockState.ACQUIRED and self._exists(key):
                return Outcome(key, "waited")  # the leader finished between our two checks
            return self._recognise(image, fp, key)
        finally:
            self.index.unlock(self.namespace, fp.pixel_digest, lock)

    def _recognise(self, image: Image.Image, fp: Fingerprint, key: str) -> Outcome:
        t0 = time.perf_counter()
        result = self.predictor.read(image)
        metrics.INFERENCE.observe(time.perf_counter() - t0)
        created = self._clock()
        doc = self._result_doc(key, fp, result, created)
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        # Order matters: signature and thumbnail first, result.json last (its presence = complete),
        # then Redis, so the index never points at a result that storage does not have.
        signature = verify.make_signature(image)
        if signature is not None:
            self.results.put(key, SIGNATURE, verify.encode_signature(signature), content_type="image/png")
        self.results.put(key, THUMBNAIL, make_thumbnail(image), content_type="image/jpeg")
        created_now = self.results.put(key, RESULT, body, content_type="application/json; charset=utf-8")
        if not created_now:  # someone else stored it first: theirs is the result at this URL
            body = self.results.get(key, RESULT) or body
        if signature is None:
            # nothing to verify a near duplicate against: not indexed, reused only when identical
            logger.info("near-duplicate reuse off key=%s reason=page over %d pixels", key, verify.MAX_PIXELS)
        else:
            self.index.record(self.namespace, key, fp.phash, created_at=created)
        return Outcome(key, "miss", body)

    def _result_doc(self, key: str, fp: Fingerprint, result: Any, created: float) -> dict[str, Any]:
        raw = result.to_dict()
        lines = []
        for line in raw.get("lines", []):
            entry = {"text": line["text"], "confidence": round(float(line["confidence"]), 4),
                     "box": [int(v) for v in line["box"]]}
            if line.get("polygon") is not None:
                entry["polygon"] = [[int(x), int(y)] for x, y in line["polygon"]]
            # Word boxes (for highlighting and redaction) and table cells' places, as read.
            for name in ("words", "row", "column"):
                if line.get(name) is not None:
                    entry[name] = line[name]
            lines.append(entry)
        return {
            "key": key,
            "text": raw.get("text", result.text),
            "lines": lines,
            "phash": fp.phash_hex,
            "sha256": fp.sha256,
            "pixel_sha256": fp.pixel_digest,
            "width": fp.width,
            "height": fp.height,
            "model": {"name": self.predictor.model_name, "version": self.predictor.model_version,
                      "namespace": self.namespace},
            # which line finder read the image (classical for documents, learned for photos)
            "finder": raw.get("finder", "classical"),
            # the clockwise turn (0/90/180/270) that made the upload upright; boxes are the upload's
            "rotation": int(raw.get("rotation", 0)),
            "elapsed_ms": round(float(raw.get("elapsed_ms", result.elapsed_ms)), 2),
            "created_at": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds"),
        }


def make_thumbnail(image: Image.Image) -> bytes:
    thumb = image.copy()
    thumb.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=80, optimize=True)
    return buf.getvalue()
