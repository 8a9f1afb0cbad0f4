"""Origin configuration, read once at startup from the environment (docs/architecture.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cache.index import MAX_RADIUS
from cache.keys import MIN_SECRET_BYTES


class ConfigError(ValueError):
    """The environment does not describe a usable configuration."""


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0,
         maximum: int | None = None) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be in {minimum}..{maximum if maximum is not None else '∞'}, got {value}")
    return value


def _float(environ: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0,
           maximum: float | None = None) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= (maximum if maximum is not None else float("inf")):
        raise ConfigError(f"{name} must be in {minimum}..{maximum if maximum is not None else '∞'}, got {value}")
    return value


def load_secret(environ: Mapping[str, str]) -> bytes:
    """OCR_SECRET, else the file OCR_SECRET_FILE (default var/secret, created by `make run`).

    Never generated here: every origin of a deployment must share one secret, or the same image
    would get a different key on each origin.
    """
    if environ.get("OCR_SECRET"):
        secret = environ["OCR_SECRET"].encode()
        source = "OCR_SECRET"
    else:
        path = Path(environ.get("OCR_SECRET_FILE") or "var/secret")
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"no key secret: set OCR_SECRET or create {path} "
                              f"(e.g. `head -c 32 /dev/urandom | base64 > {path}`): {exc}") from exc
        source = str(path)
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"the secret from {source} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


@dataclass(frozen=True)
class Settings:
    secret: bytes = field(repr=False)
    redis_url: str = "redis://127.0.0.1:6379/0"       # "" disables the index (no dedup)
    storage_url: str = "file://var/results"            # or s3://bucket/prefix
    s3_endpoint_url: str | None = None                 # moto / SeaweedFS / MinIO; else AWS_ENDPOINT_URL
    max_upload_bytes: int = 20 * 1024 * 1024           # nginx client_max_body_size uses the same value
    max_pixels: int = 40_000_000                       # decompression-bomb limit
    hamming_distance: int = 4                          # pHash candidate radius (cache/index.py)
    model_path: str | None = None                      # None: ocr_core's shipped weights
    torch_threads: int = 1                             # one intra-op thread per worker (NOTES §1)
    detector_path: str | None = None                   # None: shipped photo detector; "off": none
    log_level: str = "INFO"
    result_max_age: int = 7 * 24 * 3600                # Cache-Control on immutable results
    error_max_age: int = 60                            # short, so a CDN never pins a 404
    max_candidates: int = 8                            # near-duplicate candidates verified per upload
    # Recognition queue (origin/jobs.py, docs/architecture.md "Recognition on a queue").
    queue_name: str = "ocr"                            # the RQ queue the workers listen on
    sync_wait_s: float = 10.0                          # POST /ocr waits this long, then answers 202
    job_timeout_min_s: int = 60                        # a job's time limit: this much plus ...
    job_seconds_per_mpx: float = 10.0                  # ... this per million pixels (~4x measured)
    job_timeout_max_s: int = 900                       # ... at most this
    job_retries: int = 1                               # runs after a worker died mid-job
    worker_nice: int = 10                              # workers' CPU priority: co-located origins first
    pdf_dpi: int = 200                                 # PDF pages are rendered at this resolution
    pdf_max_pages: int = 20                            # more pages: 413 too_many_pages
    batch_max_items: int = 100                         # images (or ZIP entries) per batch
    batch_max_bytes: int = 200 * 1024 * 1024           # a batch ZIP's total uncompressed size

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"secret shorter than {MIN_SECRET_BYTES} bytes")
        if not 0 <= self.hamming_distance <= MAX_RADIUS:
            raise ConfigError(f"OCR_HAMMING_DISTANCE must be 0..{MAX_RADIUS}")
        if not self.queue_name or not self.queue_name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError("OCR_QUEUE must be letters, digits, '-' or '_'")

    def job_timeout(self, pixels: int) -> int:
        """A job's time limit from the pixels it reads: a dense 6300x6300 page took 80-110 s
        (issue 14), ~2.5 s per million pixels on an idle core; the default allows ~4x that, for
        denser pages and busy machines (a 4.8 Mpx page of 70 lines took over 59 s on 2 busy
        cores in the e2e tests)."""
        seconds = self.job_timeout_min_s + self.job_seconds_per_mpx * pixels / 1e6
        return int(min(self.job_timeout_max_s, seconds))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            secret=load_secret(environ),
            redis_url=environ.get("OCR_REDIS_URL", cls.redis_url).strip(),
            storage_url=environ.get("OCR_STORAGE_URL") or cls.storage_url,
            s3_endpoint_url=environ.get("OCR_S3_ENDPOINT_URL") or environ.get("AWS_ENDPOINT_URL") or None,
            max_upload_bytes=_int(environ, "OCR_MAX_UPLOAD_BYTES", cls.max_upload_bytes, minimum=1),
            max_pixels=_int(environ, "OCR_MAX_PIXELS", cls.max_pixels, minimum=1),
            hamming_distance=_int(environ, "OCR_HAMMING_DISTANCE", cls.hamming_distance, maximum=MAX_RADIUS),
            model_path=environ.get("OCR_MODEL_PATH") or None,
            torch_threads=_int(environ, "OCR_TORCH_THREADS", cls.torch_threads, minimum=1),
            detector_path=environ.get("OCR_DETECTOR_PATH") or None,
            log_level=(environ.get("OCR_LOG_LEVEL") or cls.log_level).upper(),
            queue_name=(environ.get("OCR_QUEUE") or cls.queue_name).strip(),
            sync_wait_s=_float(environ, "OCR_SYNC_WAIT_S", cls.sync_wait_s, maximum=60.0),
            job_timeout_min_s=_int(environ, "OCR_JOB_TIMEOUT_MIN_S", cls.job_timeout_min_s, minimum=1),
            job_seconds_per_mpx=_float(environ, "OCR_JOB_SECONDS_PER_MPX", cls.job_seconds_per_mpx),
            job_timeout_max_s=_int(environ, "OCR_JOB_TIMEOUT_MAX_S", cls.job_timeout_max_s, minimum=1),
            job_retries=_int(environ, "OCR_JOB_RETRIES", cls.job_retries, maximum=5),
            worker_nice=_int(environ, "OCR_WORKER_NICE", cls.worker_nice, maximum=19),
            pdf_dpi=_int(environ, "OCR_PDF_DPI", cls.pdf_dpi, minimum=36, maximum=600),
            pdf_max_pages=_int(environ, "OCR_PDF_MAX_PAGES", cls.pdf_max_pages, minimum=1),
            batch_max_items=_int(environ, "OCR_BATCH_MAX_ITEMS", cls.batch_max_items, minimum=1),
            batch_max_bytes=_int(environ, "OCR_BATCH_MAX_BYTES", cls.batch_max_bytes, minimum=1),
        )
