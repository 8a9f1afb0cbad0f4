"""The upload flow: decode → fingerprint → exact key → verified near duplicate → job on the queue
→ wait (bounded) → the result, or a job location.

Reuse rule (README "Keys and reuse"): an upload reuses a stored result only if
  * its key exists in storage (same pixels, same model namespace), or
  * a stored result of the same model namespace has a pHash within `hamming_distance` AND the
    verifier (cache/verify.py) accepts it: same shape and scale, no faint ink, no local
    difference above its threshold.
Exactly the bytes of an earlier upload find that upload's key (and match) in Redis without being
decoded again (`ocr:v2:bytes:`, checked against storage; recorded as soon as the job is queued,
so a repeat sent meanwhile joins the running job), and a PDF's key comes from its bytes:
a repeated upload costs a hash, never a decode, however large its header says it is.
Everything else is recognised by a queue worker (origin/worker.py) under its own key; the job id
is that key, so identical uploads anywhere share one job (origin/jobs.py).
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from PIL import Image

from cache import verify
from cache.fingerprint import Fingerprint, fingerprint
from cache.keys import KeyDeriver, is_valid_key, model_namespace
from cache.store import RESULT, SIGNATURE, ResultStore

from . import metrics, pdf
from .backends import DegradingIndex, RedisIndex, ResultFiles
from .errors import QueueUnavailable, RecognitionFailed
from .images import decode_image
from .jobs import JobState, ModelIdentity, RecognitionQueue
from .settings import Settings

logger = logging.getLogger(__name__)
__all__ = ["OcrService", "Outcome", "Recognizer", "RedisIndex", "identity_of"]


class Recognizer(Protocol):
    """What the workers need from ocr_core.Predictor."""
    model_name: str
    model_version: str

    def read(self, image: Any, *, single_line: bool = False) -> Any: ...


def identity_of(predictor: Recognizer) -> ModelIdentity:
    return ModelIdentity(predictor.model_name, predictor.model_version,
                         model_namespace(predictor.model_name, predictor.model_version))


@dataclass(frozen=True)
class Outcome:
    key: str
    match: str                 # "exact" | "near" | "waited" (joined a job) | "miss" | "pending"
    body: bytes | None = None  # the stored result JSON when this call read it

    @property
    def hit(self) -> bool:
        return self.match in ("exact", "near", "waited")

    @property
    def pending(self) -> bool:
        return self.match == "pending"


class OcrService:
    """Built once per web worker by create_app: store, index, queue and key deriver (no model)."""

    def __init__(self, settings: Settings, *, store: ResultStore, index: RedisIndex | None,
                 queue: RecognitionQueue | None, identity: ModelIdentity | None = None) -> None:
        self.settings = settings
        self.store = store                   # the raw store (readiness pings it)
        self.results = ResultFiles(store)    # what the flow and the views use: errors are 503s
        self.index = DegradingIndex(index)   # Redis failures degrade dedup, never the upload
        self.queue = queue
        self.keys = KeyDeriver(settings.secret)
        self._fixed_identity = identity  # tests and single-process use: the model in this process

    # the model the workers run ---------------------------------------------------------------
    def identity(self) -> ModelIdentity | None:
        if self._fixed_identity is not None:
            return self._fixed_identity
        return self.queue.identity() if self.queue is not None else None

    @property
    def namespace(self) -> str | None:
        identity = self.identity()
        return identity.namespace if identity else None

    def _exists(self, key: str) -> bool:
        return self.results.exists(key, RESULT)

    # the flow --------------------------------------------------------------------------------
    def submit(self, data: bytes, *, wait: bool = True, charge: Callable[[int], None] | None = None) -> Outcome:
        """The key of the result for these upload bytes; recognition runs on the queue when
        needed, and this waits for it up to OCR_SYNC_WAIT_S (not at all with wait=False).
        `charge(pixels)` is asked before an image is decoded or a PDF's pages are rendered (the
        client's budget may refuse)."""
        if pdf.is_pdf(data):
            return self._submit_pdf(data, wait=wait, charge=charge)
        sha = hashlib.sha256(data).hexdigest()
        known = self._known_bytes(sha, wait=wait)
        if known is not None:  # exactly the bytes of an earlier upload: no decoding at all
            metrics.UPLOADS.inc()
            if not known.pending:
                metrics.DEDUP.labels("hit", known.match).inc()
            logger.info("upload done key=%s cache=%s match=%s by=bytes sha256=%s", known.key,
                        "HIT" if known.hit else "MISS", known.match, sha[:16])
            return known
        decoded = decode_image(data, max_pixels=self.settings.max_pixels, charge=charge)
        metrics.UPLOADS.inc()
        image = decoded.image
        fp = fingerprint(image, data, sha256=sha)   # the bytes are hashed once, above
        identity = self._identity_or_503()
        key = self.keys.derive(identity.namespace, fp.pixel_digest)
        if self._exists(key):
            outcome = Outcome(key, "exact")
        else:
            near = self._near_duplicate(image, fp, identity.namespace)
            if near is not None:
                outcome = Outcome(key=near, match="near")
            else:  # these bytes are remembered before the wait (_enqueue), not after it
                return self._done(self._enqueue(key, identity, data, pixels=image.width * image.height,
                                                 kind="image", wait=wait, phash=fp.phash_hex,
                                                 fine=fp.fine.hex(), sha=sha), fp)
        # A near match is remembered as one (its key holds a look-alike's text, not these pixels').
        kind = "near" if outcome.match == "near" else "exact"
        self.index.record_bytes(identity.namespace, sha, f"{kind}:{outcome.key}")
        return self._done(outcome, fp)

    def _known_bytes(self, sha: str, *, wait: bool) -> Outcome | None:
        """The outcome these exact bytes had before, if Redis remembers it and storage holds its
        result, or the job that is making it, joined like an identical upload joins it (a job
        that failed or vanished is not joined: the upload is decoded and queued again).
        Redis is not trusted: a malformed entry or another model's key is ignored."""
        namespace = self.namespace
        if namespace is None:
            return None
        entry = self.index.key_for_bytes(namespace, sha)
        if entry is None:
            return None
        kind, _, key = entry.partition(":")
        if kind not in ("exact", "near") or not is_valid_key(key) or not key.startswith(namespace):
            logger.warning("upload bytes entry ignored sha256=%s entry=%r reason=foreign or malformed",
                           sha[:16], entry[:80])
            return None
        if self._exists(key):
            return Outcome(key, kind)
        if kind == "exact" and self.queue is not None:  # recorded when its job was queued
            try:
                state = self.queue.state(key)
            except QueueUnavailable:
                return None
            if state is not None and state.status in ("queued", "running"):
                return self._wait(key, created=False, wait=wait)
        return None

    def _identity_or_503(self) -> ModelIdentity:
        """No worker has ever said which model it runs (or Redis was down since this origin
        started): no key can be derived, so nothing can be looked up or queued."""
        identity = self.identity()
        if identity is None:
            raise QueueUnavailable("no recognition worker has registered yet; try again shortly")
        return identity

    def _submit_pdf(self, data: bytes, *, wait: bool, charge: Callable[[int], None] | None = None) -> Outcome:
        """A PDF: limits checked here, pages rendered and read by a worker; no near duplicates.
        Rendering is paid like decoding: all pages' pixels, known from the page boxes, are
        charged before a job is queued, so a PDF asking for a huge render is refused here."""
        identity = self.identity()
        if identity is not None and data:  # the key comes from the bytes: a repeat is not opened
            key = self.keys.derive(identity.namespace, pdf.digest(data))
            if self._exists(key):
                metrics.UPLOADS.inc()
                metrics.DEDUP.labels("hit", "exact").inc()
                logger.info("upload done key=%s kind=pdf match=exact", key)
                return Outcome(key, "exact")
        info = pdf.inspect(data, dpi=self.settings.pdf_dpi, max_pages=self.settings.pdf_max_pages,
                           max_pixels=self.settings.max_pixels)
        if charge is not None:
            charge(info.pixels)
        metrics.UPLOADS.inc()
        identity = self._identity_or_503()
        key = self.keys.derive(identity.namespace, pdf.digest(data))
        if self._exists(key):
            outcome = Outcome(key, "exact")
        else:
            outcome = self._enqueue(key, identity, data, pixels=info.pixels, kind="pdf", wait=wait)
        if not outcome.pending:
            metrics.DEDUP.labels("hit" if outcome.hit else "miss", outcome.match).inc()
        logger.info("upload done key=%s kind=pdf pages=%d match=%s", key, info.pages, outcome.match)
        return outcome

    def _enqueue(self, key: str, identity: ModelIdentity, data: bytes, *, pixels: int, kind: str,
                 wait: bool, phash: str | None = None, fine: str | None = None,
                 sha: str | None = None) -> Outcome:
        """Queue (or join) the job for `key` and wait for it. `sha`: the upload bytes' digest,
        remembered for `key` as soon as the job exists, so that identical bytes sent during the
        wait join the job undecoded, and the wait's answer needs no Redis write after it. Safe
        if the job then fails: the shortcut serves only a stored result or a live job."""
        if self.queue is None:
            raise QueueUnavailable("recognition needs Redis (OCR_REDIS_URL is empty)")
        timeout = self.settings.job_timeout(pixels)
        # the pHash and fine hash go with the job: the worker need not compute them again
        created = self.queue.submit(key, args=(identity.namespace, data, kind, phash, fine), timeout=timeout)
        if created:
            metrics.JOBS_ENQUEUED.inc()
        if sha is not None:
            self.index.record_bytes(identity.namespace, sha, f"exact:{key}")
        return self._wait(key, created=created, wait=wait)

    def _wait(self, key: str, *, created: bool, wait: bool) -> Outcome:
        """The job's outcome within OCR_SYNC_WAIT_S (pending past it, or with wait=False)."""
        assert self.queue is not None  # callers hold a job on it
        if not wait or self.settings.sync_wait_s <= 0:
            return Outcome(key, "pending")
        t0 = time.perf_counter()
        state: JobState = self.queue.wait(key, self.settings.sync_wait_s, created=created)
        metrics.SYNC_WAIT.observe(time.perf_counter() - t0)
        if state.status == "done":
            return Outcome(key, "miss" if created else "waited")
        if state.status == "failed":
            raise RecognitionFailed(state.error or "recognition failed")
        return Outcome(key, "pending")

    def _done(self, outcome: Outcome, fp: Fingerprint) -> Outcome:
        if not outcome.pending:
            metrics.DEDUP.labels("hit" if outcome.hit else "miss", outcome.match).inc()
        logger.info("upload done key=%s cache=%s match=%s phash=%s sha256=%s", outcome.key,
                    "HIT" if outcome.hit else "MISS", outcome.match, fp.phash_hex, fp.sha256[:16])
        return outcome

    def _near_duplicate(self, image: Image.Image, fp: Fingerprint, namespace: str) -> str | None:
        if not verify.can_match(image.width, image.height):
            return None  # larger than any stored signature can be: exact reuse only
        upload = verify.PreparedUpload(image)
        if upload.faint:
            logger.info("near-duplicate lookup skipped reason=faint content phash=%s", fp.phash_hex)
            return None  # no candidate could pass: save the lookup and the signature reads
        candidates = self.index.candidates(namespace, fp.phash, limit=self.settings.max_candidates,
                                           unstable=fp.unstable, fine=fp.fine)
        for cand in candidates:
            # Redis is not trusted: a malformed key never reaches storage, and another model's
            # result is never served, whatever an index entry says.
            if not is_valid_key(cand.key) or not cand.key.startswith(namespace):
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
            logger.info("near-duplicate candidate key=%s distance=%d fine=%s score=%.1f same=%s reason=%s",
                        cand.key, cand.distance, cand.fine_distance, verdict.score, verdict.same, verdict.reason)
            if verdict.same:
                return cand.key
            metrics.NEAR_REJECTED.inc()
        return None
