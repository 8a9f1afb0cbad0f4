"""Queue workers: the only processes that load and run the recognizer.

    ocr-origin worker [--burst] [--name NAME]       (one process; `make run` starts one per core)

Each worker process loads the model once, announces it (origin/jobs.py) and runs RQ's
SimpleWorker loop: jobs run in this process, on the loaded model. RQ 3's forking `Worker`
starts every job in a fresh interpreter (posix_spawn), which would load the model per job.

A job (`recognise`) decodes the upload again (the model needs the pixels), checks that they
give the job's key, runs the recognizer and stores signature, thumbnail and result (result.json
last: its presence means complete), wakes the uploads waiting for it at once, then indexes the
pHash and fine hash (the origin's, sent with the job). Each job's log line gives its stages
in ms. A worker that dies mid-job stops heartbeating; within HEARTBEAT_TTL_S + MAINTENANCE_S any
live worker's maintenance finds the job abandoned and RQ retries it (OCR_JOB_RETRIES) or marks
it failed, so no job stays "running" for ever.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import redis
from PIL import Image

from cache import redis_keys, verify
from cache.fingerprint import Fingerprint, fingerprint, parse_phash
from cache.keys import KeyDeriver
from cache.store import RESULT, SIGNATURE, THUMBNAIL, ResultStore

from . import metrics, pdf
from .images import decode_image
from .jobs import ModelIdentity, RecognitionQueue
from .backends import DegradingIndex, RedisIndex, ResultFiles
from .service import Recognizer, identity_of
from .settings import Settings

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (320, 320)
# A job's registry entry expires this long after the last heartbeat of its worker...
HEARTBEAT_TTL_S = 15
HEARTBEAT_EVERY_S = 3.0
# ... and every live worker looks for expired (abandoned) entries this often.
MAINTENANCE_S = 10
# The worker's own registration expires this long after its last beat; RQ waits on the queue
# for this minus 15 s at a time.
WORKER_TTL_S = 60


class ModelMismatch(RuntimeError):
    """The job was keyed for another model than this worker runs (during a rollout)."""


class Recognition:
    """Recognise one upload and store its result: what a job does, with what it needs."""

    def __init__(self, settings: Settings, *, predictor: Recognizer, store: ResultStore,
                 index: RedisIndex | None) -> None:
        self.settings = settings
        self.predictor = predictor
        self.results = ResultFiles(store)    # failures: StorageDown (the job fails, is retried)
        self.index = DegradingIndex(index)   # failures: not indexed (`ocr-origin reindex`)
        self.identity: ModelIdentity = identity_of(predictor)
        self.keys = KeyDeriver(settings.secret)
        # seconds per stage of the last job ("decode" with the key check, "read", "store"): logged
        self.timings: dict[str, float] = {}

    def run(self, key: str, namespace: str, data: bytes, kind: str = "image", phash: str | None = None,
            fine: str | None = None, stored: Callable[[str], None] | None = None) -> str:
        """`stored(key)` is called the moment result.json is stored (the queue wakes the uploads
        waiting for it), before the slower bookkeeping that follows (indexing, RQ's). `phash`:
        the upload's pHash as the origin computed it (hex), and `fine` its fine hash (hex), so the
        worker does not compute them again (absent from jobs of older origins: computed here).
        Trusted only for indexing: a wrong one could at worst offer or rank a near-duplicate
        candidate that the verifier then rejects. The key is always checked against the pixels
        decoded here."""
        if namespace != self.identity.namespace:
            raise ModelMismatch(f"job for model namespace {namespace}, this worker runs "
                                f"{self.identity.namespace} ({self.identity.version})")
        if self.results.exists(key, RESULT):
            if stored is not None:
                stored(key)
            return key  # a replaced or retried job whose first run did finish
        if kind == "pdf":
            if self.keys.derive(namespace, pdf.digest(data)) != key:
                raise ValueError(f"job {key} carries a PDF of another key")
            self.store_pdf(key, data, stored)
            return key
        t0 = time.perf_counter()
        image = decode_image(data, max_pixels=self.settings.max_pixels).image
        fp = fingerprint(image, data, phash=None if phash is None else parse_phash(phash),
                         fine=_parse_fine(fine))
        # Never store one image's text under another's key, whatever the queue says.
        expected = self.keys.derive(namespace, fp.pixel_digest)
        if expected != key:
            raise ValueError(f"job {key} carries an upload whose key is {expected}")
        self.timings["decode"] = time.perf_counter() - t0
        self.store_result(image, fp, key, stored)
        return key

    def store_result(self, image: Image.Image, fp: Fingerprint, key: str,
                     stored: Callable[[str], None] | None = None) -> bytes:
        t0 = time.perf_counter()
        result = self.predictor.read(image)
        t1 = time.perf_counter()
        self.timings["read"] = t1 - t0
        metrics.INFERENCE.observe(t1 - t0)
        created = time.time()
        doc = self.result_doc(key, fp, result, created)
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        # Order matters: signature and thumbnail first, result.json last (its presence = complete),
        # then Redis, so the index never points at a result that storage does not have.
        signature = verify.make_signature(image)
        if signature is not None:
            self.results.put(key, SIGNATURE, verify.encode_signature(signature), content_type="image/png")
        self.results.put(key, THUMBNAIL, make_thumbnail(image), content_type="image/jpeg")
        if not self.results.put(key, RESULT, body, content_type="application/json; charset=utf-8"):
            body = self.results.get(key, RESULT) or body  # stored first by another run: theirs stays
        if stored is not None:
            stored(key)
        if signature is None:
            # nothing to verify a near duplicate against: not indexed, reused only when identical
            logger.info("near-duplicate reuse off key=%s reason=page over %d pixels", key, verify.MAX_PIXELS)
        else:
            self.index.record(self.identity.namespace, key, fp.phash, created_at=created, fine=fp.fine)
        self.timings["store"] = time.perf_counter() - t1
        return body

    def store_pdf(self, key: str, data: bytes, stored: Callable[[str], None] | None = None) -> bytes:
        """Render and read every page; one result with `pages`, text joined by form feeds,
        page 1 as the thumbnail. Not indexed: PDFs are reused when byte-identical only."""
        pdf.inspect(data, dpi=self.settings.pdf_dpi, max_pages=self.settings.pdf_max_pages,
                    max_pixels=self.settings.max_pixels)  # the origin checked; never trust the queue
        t0 = time.perf_counter()
        pages: list[dict[str, Any]] = []
        thumbnail = b""
        for number, image in enumerate(pdf.render_pages(data, dpi=self.settings.pdf_dpi), start=1):
            t1 = time.perf_counter()
            result = self.predictor.read(image)
            metrics.INFERENCE.observe(time.perf_counter() - t1)
            raw = result.to_dict()
            pages.append({"page": number, "width": image.width, "height": image.height,
                          "text": raw.get("text", result.text), "lines": self._lines(raw),
                          "finder": raw.get("finder", "classical"), "rotation": int(raw.get("rotation", 0)),
                          "skew": float(raw.get("skew", 0.0))})
            if number == 1:
                thumbnail = make_thumbnail(image)
        created = time.time()
        doc = {
            "key": key,
            "text": "\f".join(p["text"] for p in pages),
            "lines": [{**line, "page": p["page"]} for p in pages for line in p["lines"]],
            "pages": pages,
            "sha256": hashlib.sha256(data).hexdigest(),
            "width": pages[0]["width"],
            "height": pages[0]["height"],
            "model": {"name": self.identity.name, "version": self.identity.version,
                      "namespace": self.identity.namespace},
            "source": {"type": "pdf", "pages": len(pages), "dpi": self.settings.pdf_dpi},
            "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
            "created_at": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds"),
        }
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.results.put(key, THUMBNAIL, thumbnail, content_type="image/jpeg")
        self.results.put(key, RESULT, body, content_type="application/json; charset=utf-8")
        if stored is not None:
            stored(key)
        return body

    @staticmethod
    def _lines(raw: dict[str, Any]) -> list[dict[str, Any]]:
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
        return lines

    def result_doc(self, key: str, fp: Fingerprint, result: Any, created: float) -> dict[str, Any]:
        raw = result.to_dict()
        lines = self._lines(raw)
        return {
            "key": key,
            "text": raw.get("text", result.text),
            "lines": lines,
            "phash": fp.phash_hex,
            "sha256": fp.sha256,
            "pixel_sha256": fp.pixel_digest,
            "width": fp.width,
            "height": fp.height,
            "model": {"name": self.identity.name, "version": self.identity.version,
                      "namespace": self.identity.namespace},
            # which line finder read the image (classical for documents, learned for photos)
            "finder": raw.get("finder", "classical"),
            # the clockwise turn (0/90/180/270) that made the upload upright; boxes are the upload's
            "rotation": int(raw.get("rotation", 0)),
            # the tilt (degrees, + when lines ran down to the right) undone before finding lines
            "skew": float(raw.get("skew", 0.0)),
            "elapsed_ms": round(float(raw.get("elapsed_ms", result.elapsed_ms)), 2),
            "created_at": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds"),
        }


def _parse_fine(text: str | None) -> bytes | None:
    """The fine hash a job carries (hex), None when absent or malformed (then computed here)."""
    if text is None:
        return None
    try:
        return bytes.fromhex(text)
    except (TypeError, ValueError):
        logger.warning("job fine hash ignored reason=not hex")
        return None


def make_thumbnail(image: Image.Image) -> bytes:
    thumb = image.copy()
    thumb.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=80, optimize=True)
    return buf.getvalue()


# The recognition of this process: set once by `run_worker` (or by create_app for the
# synchronous in-process queue); RQ calls `recognise` by name, so it lives at module level.
_RECOGNITION: Recognition | None = None


def install(recognition: Recognition) -> None:
    global _RECOGNITION
    _RECOGNITION = recognition


def recognise(namespace: str, data: bytes, kind: str = "image", phash: str | None = None,
              fine: str | None = None) -> str:
    """The RQ job: its id is the result key. Waiting uploads are woken as soon as the result is
    stored (RecognitionQueue.notify_done), before RQ records the job's success."""
    from rq import get_current_job

    job = get_current_job()
    if _RECOGNITION is None or job is None:
        raise RuntimeError("recognise runs inside an ocr-origin worker")
    t0 = time.perf_counter()
    # enqueued -> running: the queue's share of the latency (RQ stores UTC without a zone)
    queued_s = (time.time() - job.enqueued_at.replace(tzinfo=timezone.utc).timestamp()
                if job.enqueued_at else float("nan"))
    _RECOGNITION.timings.clear()
    try:
        key = _RECOGNITION.run(job.id, namespace, data, kind, phash, fine=fine,
                               stored=RecognitionQueue(job.connection, job.origin).notify_done)
    except ModelMismatch as exc:
        job.meta["error"] = "the workers are changing model versions; upload it again to retry"
        job.save_meta()
        metrics.JOB_DURATION.labels("mismatch").observe(time.perf_counter() - t0)
        logger.warning("job refused key=%s reason=%s", job.id, exc)
        raise
    except Exception:
        metrics.JOB_DURATION.labels("error").observe(time.perf_counter() - t0)
        raise
    seconds = time.perf_counter() - t0
    metrics.JOB_DURATION.labels("ok").observe(seconds)
    stages = " ".join(f"{name}_ms={value * 1000:.1f}" for name, value in _RECOGNITION.timings.items())
    logger.info("job done key=%s seconds=%.3f queued_ms=%.1f %s", key, seconds, queued_s * 1000, stages)
    return key


class JobHeartbeat:
    """Keeps the running job's heartbeat alive from one thread per worker (RQ's SimpleWorker
    beats only between jobs). One thread for the worker's life, not one per job: starting a
    thread cost ~1.3 ms of every job's latency on a busy machine (docs/benchmarks.md)."""

    def __init__(self, beat: Callable[[Any, Any], None]) -> None:
        self._beat = beat
        self._cond = threading.Condition()
        self._current: tuple[Any, Any] | None = None
        self._thread: threading.Thread | None = None

    def begin(self, job: Any, execution: Any) -> None:
        with self._cond:
            self._current = (job, execution)
            self._cond.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="job-heartbeat", daemon=True)
            self._thread.start()

    def end(self) -> None:
        """Returns once no beat of this job can follow (beats run under the lock): a late beat
        would put a finished job back in RQ's started registry, to be found 'abandoned'."""
        with self._cond:
            self._current = None
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._current is None:
                    self._cond.wait()
                current = self._current
                if self._cond.wait_for(lambda: self._current is not current, timeout=HEARTBEAT_EVERY_S):
                    continue  # the job ended (or another began) before its next beat
                try:
                    self._beat(*current)
                except Exception as exc:  # a missed beat is retried; never kill the job
                    logger.warning("heartbeat failed job=%s error=%s", current[0].id, exc)


def _worker_class(announce: tuple[str, str] | None = None) -> type:
    """`announce`: (Redis key, value) of the model identity, written again with every heartbeat
    of the worker, so a Redis restarted empty learns the model again within a minute."""
    from rq import SimpleWorker

    class OcrWorker(SimpleWorker):
        """SimpleWorker with a short heartbeat kept alive by a thread during each job: a killed
        worker's job is found abandoned within seconds instead of after its time limit."""

        def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
            super().heartbeat(timeout, pipeline=pipeline)
            if announce is not None:
                (pipeline if pipeline is not None else self.connection).set(*announce)

        def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
            return HEARTBEAT_TTL_S

        _beats: "JobHeartbeat | None" = None

        def execute_job(self, job: Any, queue: Any) -> None:
            execution = self.prepare_execution(job)
            if self._beats is None:
                self._beats = JobHeartbeat(self.maintain_heartbeats)
            self._beats.begin(job, execution)
            try:
                self.perform_job(job, queue, execution)
            finally:
                self._beats.end()
            from rq.worker import WorkerStatus

            self.set_state(WorkerStatus.IDLE)

    return OcrWorker


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> int:
    """Load the model, announce it, then take jobs until SIGTERM (or the queue is empty: burst)."""
    from cache.index import RedisResultIndex
    from cache.store import from_url

    from . import load_predictor
    from .jobs import RecognitionQueue, connect

    if not settings.redis_url:
        logger.error("a worker needs Redis: set OCR_REDIS_URL")
        return 2
    if settings.worker_nice:
        # On a machine shared with origins (make run, one compose host) recognition must not
        # starve the web tier: /healthz and result GETs get the CPU first, jobs take the rest.
        os.nice(settings.worker_nice)
    store = from_url(settings.storage_url, endpoint_url=settings.s3_endpoint_url)
    index = RedisResultIndex.from_url(settings.redis_url, radius=settings.hamming_distance)
    predictor = load_predictor(settings)
    recognition = Recognition(settings, predictor=predictor, store=store, index=index)
    install(recognition)
    # RQ blocks on the queue for worker_ttl - 15 s; reads must be allowed to last longer.
    connection = connect(settings.redis_url, read_timeout_s=WORKER_TTL_S + 15)
    queue = RecognitionQueue(connection, settings.queue_name, retries=settings.job_retries)
    queue.announce(recognition.identity)
    worker_class = _worker_class((redis_keys.model_identity(settings.queue_name),
                                  recognition.identity.to_json()))
    backoff = 1.0
    # RQ's loop retries a lost Redis while it waits for jobs, but quits on an error elsewhere
    # (a heartbeat or maintenance call while Redis restarts): start a new loop then, so a Redis
    # outage costs recognition time, not the worker (and `make run` all its children).
    while True:
        worker = worker_class([queue.queue], connection=connection, name=name, worker_ttl=WORKER_TTL_S,
                              job_monitoring_interval=int(HEARTBEAT_EVERY_S),
                              maintenance_interval=MAINTENANCE_S)
        logger.info("worker ready name=%s queue=%s model=%s namespace=%s pid=%d", worker.name,
                    settings.queue_name, recognition.identity.version, recognition.identity.namespace,
                    os.getpid())
        # RQ installs its own SIGTERM/SIGINT handlers in work(): warm shutdown after the job.
        try:
            worker.work(burst=burst, logging_level=settings.log_level, with_scheduler=False)
        except redis.RedisError as exc:
            logger.error("worker loop failed error=%s", exc)
        # A stop signal while busy sets _stop_requested; while idle RQ raises StopRequested and
        # leaves only the request's date behind: both mean "stop", not "restart the loop".
        if burst or worker._stop_requested or worker._shutdown_requested_date is not None:
            return 0
        logger.warning("worker loop ended without a stop request; restarting in %.0f s", backoff)
        time.sleep(backoff)
        backoff = min(backoff * 2, 30.0)
        try:
            queue.announce(recognition.identity)
        except Exception as exc:  # QueueUnavailable: the next loop waits for Redis itself
            logger.warning("model not announced error=%s", exc)
