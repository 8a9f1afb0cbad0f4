"""Recognition jobs on RQ: one job per content key, waited for a bounded time, reported by key.

The origins (web tier) never run the model: they enqueue a job whose id is the result key and
wait for it up to `OCR_SYNC_WAIT_S`. RQ's `unique=True` enqueue is atomic (a Lua script), so
identical uploads on every origin that shares Redis collapse into one job: the first creates it,
the others join it (single flight without a lock of our own). A job that failed (an error, its
time limit, or a worker that died with it and used up its retries) is replaced by the next
upload of the same content.

Workers (origin/worker.py) announce the model they run under `ocr:v2:model:{queue}`; the origins
derive result keys in that model's namespace, and a worker refuses a job of another namespace,
so a key never holds another model's text.

Every Redis failure here becomes QueueUnavailable (503 with Retry-After): results already
stored stay readable, exact re-uploads stay HITs, only new content waits for Redis.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.worker import Worker

from cache import redis_keys

from .errors import QueueUnavailable

logger = logging.getLogger(__name__)

# Imported by name in the worker only: the origins never import torch.
JOB_FUNC = "origin.worker.recognise"
RESULT_TTL_S = 600        # finished jobs (their outcome lives in storage; this is bookkeeping)
FAILURE_TTL_S = 24 * 3600  # failed jobs stay visible at /jobs/<key> for a day
IDENTITY_TTL_S = 5.0       # how long an origin trusts its copy of the workers' model identity
# A done notice only has to outlive the longest sync wait that may start reading it (60 s max).
DONE_NOTICE_TTL_S = 90
_REPLACEABLE = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, JobStatus.FINISHED}


@dataclass(frozen=True)
class ModelIdentity:
    """The model the workers run; its namespace prefixes every key it produces."""
    name: str
    version: str
    namespace: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "ModelIdentity":
        doc = json.loads(raw)
        return cls(str(doc["name"]), str(doc["version"]), str(doc["namespace"]))


@dataclass(frozen=True)
class JobState:
    status: str                   # "queued" | "running" | "failed" | "done"
    position: int | None = None   # 0 = next to run (queued only)
    error: str | None = None      # why it failed (failed only), never a traceback


def connect(url: str, *, read_timeout_s: float) -> redis.Redis:
    """A client for RQ: bytes (RQ's pickles), no retries (a down Redis is a quick 503), and a
    read timeout longer than the longest blocking wait."""
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=read_timeout_s,
                                retry=RedisRetry(NoBackoff(), 0))


class RecognitionQueue:
    """Enqueue, wait for and describe recognition jobs on one RQ queue.

    `is_async=False` runs each job inside `submit` (RQ's synchronous mode): the unit tests and a
    single-process origin use it with the in-process worker context of origin/worker.py."""

    def __init__(self, connection: redis.Redis, name: str, *, is_async: bool = True,
                 retries: int = 1) -> None:
        self.connection = connection
        self.name = name
        self.retries = retries
        self.queue = Queue(name, connection=connection, is_async=is_async)
        self._identity: ModelIdentity | None = None
        self._identity_at = float("-inf")

    def __repr__(self) -> str:
        return f"<RecognitionQueue {self.name} async={self.queue._is_async}>"

    @contextlib.contextmanager
    def _translated(self, op: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            from . import metrics

            metrics.REDIS_ERRORS.labels(op).inc()
            logger.warning("queue unavailable op=%s error=%s", op, exc)
            raise QueueUnavailable() from exc

    # the model identity ------------------------------------------------------------------------
    def announce(self, identity: ModelIdentity) -> None:
        """Called by each worker at start: origins derive keys in this model's namespace."""
        with self._translated("announce"):
            self.connection.set(redis_keys.model_identity(self.name), identity.to_json())

    def identity(self) -> ModelIdentity | None:
        """The workers' model (cached for a few seconds); the last one known when Redis is down,
        None when no worker ever announced one."""
        now = time.monotonic()
        if now - self._identity_at < IDENTITY_TTL_S:
            return self._identity
        try:
            raw = self.connection.get(redis_keys.model_identity(self.name))
        except redis.RedisError as exc:
            logger.warning("model identity not refreshed error=%s", exc)
            return self._identity
        if raw is not None:
            # Only an answer is cached: while no worker has announced, every upload asks again,
            # so the first uploads after the first worker starts are not refused for the TTL.
            self._identity_at = now
            identity = ModelIdentity.from_json(raw)
            if self._identity is not None and identity != self._identity:
                logger.info("workers' model changed from %s to %s", self._identity.version, identity.version)
            self._identity = identity
        return self._identity

    # jobs -------------------------------------------------------------------------------------
    def submit(self, key: str, *, args: tuple[Any, ...], timeout: int) -> bool:
        """Make sure a job for `key` is queued or running; True when this call created it, False
        when it joined an existing one. A failed or finished job is replaced (its result is not
        in storage, or the caller would not be here)."""
        with self._translated("enqueue"):
            for _ in range(3):
                try:
                    self.queue.enqueue(
                        JOB_FUNC, args=args, job_id=key, unique=True, job_timeout=timeout,
                        result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S, description=f"recognise {key}",
                        retry=Retry(max=self.retries) if self.retries else None)
                    return True
                except DuplicateJobError:
                    job = self._fetch(key)
                    if job is None:
                        continue  # it expired between the two calls
                    status = job.get_status(refresh=False)
                    if status in _REPLACEABLE:
                        logger.info("job replaced key=%s previous=%s", key, status)
                        job.delete()
                        continue
                    return False
            raise QueueUnavailable("the job could not be enqueued; try again")

    def _fetch(self, key: str) -> Job | None:
        try:
            return Job.fetch(key, connection=self.connection)
        except NoSuchJobError:
            return None

    def wait(self, key: str, timeout: float, *, created: bool = False) -> JobState:
        """Block until the job is done or failed, at most `timeout` seconds; its state then.

        One blocking XREAD on two streams, no polling: the worker's done notice
        (`ocr:v2:done:{key}`, written the moment result.json is stored, before RQ's own
        bookkeeping of the job) and RQ's result stream of the job (failures and retries). Every
        waiter on every origin wakes at once. `created`: this caller has just enqueued the job,
        so it exists and is not finished: no state to read before waiting (a round trip saved on
        every MISS). A done notice means done: it is written only after the result is stored."""
        deadline = time.monotonic() + timeout
        done_stream = redis_keys.job_done(key).encode()
        streams: dict[Any, Any] = {done_stream: "0-0", Result.get_key(key).encode(): "0-0"}
        with self._translated("wait"):
            if not created:
                state = self._state(key)
                if state is None or state.status in ("done", "failed"):
                    return state or JobState("failed", error="the job disappeared")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._state(key) or JobState("failed", error="the job disappeared")
                # block=0 would mean "forever": at least 1 ms
                reply: Any = self.connection.xread(streams, block=max(1, int(remaining * 1000)))  # loose stubs
                if not reply:
                    continue
                for stream, entries in reply:
                    if stream == done_stream:
                        return JobState("done")
                    streams[stream] = entries[-1][0]
                    if int(entries[-1][1].get(b"type", 0)) == Result.Type.SUCCESSFUL.value:
                        return JobState("done")
                # a failure or a retry: failed for good, or queued again (wait on)
                state = self._state(key)
                if state is None or state.status in ("done", "failed"):
                    return state or JobState("failed", error="the job disappeared")

    def notify_done(self, key: str) -> None:
        """Called by the worker once the result is stored: wakes every waiter (see `wait`).
        Best effort: a waiter that misses it still wakes on RQ's result stream a moment later."""
        notice = redis_keys.job_done(key)
        try:
            pipe = self.connection.pipeline(transaction=False)
            pipe.xadd(notice, {"done": 1}, maxlen=1)
            pipe.expire(notice, DONE_NOTICE_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("done notice not sent key=%s error=%s", key, exc)

    def state(self, key: str) -> JobState | None:
        """The job's state for GET /jobs/<key>; None when there is no such job."""
        with self._translated("job"):
            return self._state(key)

    def _state(self, key: str) -> JobState | None:
        job = self._fetch(key)
        if job is None:
            return None
        status = job.get_status(refresh=False)
        if status == JobStatus.FINISHED:
            return JobState("done")
        if status == JobStatus.STARTED:
            return JobState("running")
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            return JobState("failed", error=describe_failure(job))
        position = self.queue.get_job_position(key)
        return JobState("queued", position=position)

    def stats(self) -> dict[str, int]:
        """Queue length, jobs by state and live workers, for /metrics."""
        with self._translated("stats"):
            return {
                "queued": self.queue.count,
                "running": StartedJobRegistry(queue=self.queue).count,
                "failed": FailedJobRegistry(queue=self.queue).count,
                "workers": Worker.count(queue=self.queue),
            }


def describe_failure(job: Job) -> str:
    """A short reason for a failed job, for clients (tracebacks stay in the worker's log)."""
    reason = job.meta.get("error") if isinstance(job.meta, dict) else None
    if reason:
        return str(reason)
    result = job.latest_result()
    text = (result.exc_string or "") if result is not None else ""
    if "JobTimeoutException" in text:
        return f"recognition took longer than its limit of {job.timeout} s"
    if "AbandonedJobError" in text:
        return "the worker stopped while reading this upload; upload it again to retry"
    return "recognition failed; upload it again to retry"
