"""Every OCR_* setting, declared once: name, type, default and meaning (docs/architecture.md).

The app (`Settings.from_env`), the launcher (deploy/run.py), the gunicorn config, the nginx
renderer, the CLI, `doctor` and `reindex` all read their values through `OPTIONS` here, so a
default can never differ between two of them. README "Configuration" is checked against this
table by tests/unit/origin/test_settings.py.

Standard library only at import time: deploy/run.py, deploy/gunicorn.conf.py and
deploy/nginx/render.py load this file by path (importing the `origin` package would pull Flask).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

MIN_SECRET_BYTES = 16  # cache.keys.MIN_SECRET_BYTES, checked equal by the settings tests


class ConfigError(ValueError):
    """The environment does not describe a usable configuration."""


def _default_workers(_env: Mapping[str, str]) -> str:
    # One sync worker per core, at least 2 so a slow upload never blocks /results/ misses.
    return str(max(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class Option:
    """One environment variable. `default` is the raw text used when it is unset or empty; it may
    name other options as `{OCR_X}` (resolved first) or be computed from the environment."""
    name: str
    type: str                      # int | float | str | bool | optional (str, None when empty)
    default: str | Callable[[Mapping[str, str]], str]
    doc: str
    readme_default: str | None = None  # the README's default column when not the literal default
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    keep_empty: bool = False       # an explicitly empty value means "off", not "default"

    def raw(self, env: Mapping[str, str]) -> str:
        value = env.get(self.name)
        if value is not None and (value.strip() or self.keep_empty):
            return value.strip()
        default = self.default(env) if callable(self.default) else self.default
        return default.format_map(_Resolver(env))

    def parse(self, env: Mapping[str, str]) -> Any:
        raw = self.raw(env)
        if self.type == "str":
            if self.choices:
                # Case-insensitive, returned as declared (log levels upper, engine names lower).
                declared = {c.upper(): c for c in self.choices}
                if raw.upper() not in declared:
                    raise ConfigError(f"{self.name} must be one of {', '.join(self.choices)}, got {raw!r}")
                return declared[raw.upper()]
            return raw
        if self.type == "optional":
            return raw or None
        if self.type == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ConfigError(f"{self.name} must be true or false, got {raw!r}")
        try:
            value: float = int(raw) if self.type == "int" else float(raw)
        except ValueError:
            raise ConfigError(f"{self.name} must be {'an integer' if self.type == 'int' else 'a number'}, "
                              f"got {raw!r}") from None
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            hi = self.maximum if self.maximum is not None else "∞"
            raise ConfigError(f"{self.name} must be in {self.minimum}..{hi}, got {value}")
        return value

    def readme(self) -> str:
        """The default as the README table shows it."""
        if self.readme_default is not None:
            return self.readme_default
        assert isinstance(self.default, str)
        return f"`{self.default}`" if self.default else "unset"


class _Resolver(dict):  # type: ignore[type-arg]
    """`{OCR_X}` in a default: the raw value of option OCR_X in the same environment."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__()
        self.env = env

    def __missing__(self, name: str) -> str:
        return OPTIONS[name].raw(self.env)


_OPTIONS: tuple[Option, ...] = (
    # the origin app ---------------------------------------------------------------------------
    Option("OCR_REDIS_URL", "str", "redis://127.0.0.1:{OCR_REDIS_PORT}/0",
           "Redis index; empty string disables it (no dedup, no rate limit). Credentials in the URL "
           "(`redis://:password@host:port/db`) are used (reports and logs show the password as `***`)",
           readme_default="`redis://127.0.0.1:${OCR_REDIS_PORT}/0`", keep_empty=True),
    Option("OCR_STORAGE_URL", "str", "file://{OCR_VAR_DIR}/results", "`file://DIR` or `s3://bucket/prefix`",
           readme_default="`file://${OCR_VAR_DIR}/results`"),
    Option("OCR_S3_ENDPOINT_URL", "optional", lambda env: env.get("AWS_ENDPOINT_URL", ""),
           "S3 endpoint for SeaweedFS / moto / MinIO; credentials from the usual `AWS_*` variables",
           readme_default="unset (falls back to `AWS_ENDPOINT_URL`)"),
    Option("OCR_SECRET", "optional", "", "HMAC secret for result keys (at least 16 bytes); keep it stable; "
           "wins over `OCR_SECRET_FILE`"),
    Option("OCR_SECRET_FILE", "str", "{OCR_VAR_DIR}/secret", "file holding the secret (created once by `make run`)",
           readme_default="`${OCR_VAR_DIR}/secret`"),
    Option("OCR_MAX_UPLOAD_BYTES", "int", str(20 * 1024 * 1024),
           "upload limit; nginx's `client_max_body_size` is rendered from the same value",
           readme_default="`20971520` (20 MiB)", minimum=1),
    Option("OCR_MAX_PIXELS", "int", "40000000", "decompression-bomb limit (width × height)", minimum=1),
    Option("OCR_HAMMING_DISTANCE", "int", "4", "pHash candidate radius", minimum=0, maximum=5),
    Option("OCR_MAX_CANDIDATES", "int", "8", "near-duplicate candidates verified per upload", minimum=0),
    Option("OCR_MODEL_PATH", "optional", "", "recognizer weights",
           readme_default="shipped `ocr_core/weights/crnn.pt` (fp32), `crnn-int8.pt` (int8)"),
    Option("OCR_DETECTOR_PATH", "optional", "",
           "photo text detector weights; `off` reads every page with the classical finder",
           readme_default="shipped `ocr_core/weights/dbnet.pt`"),
    Option("OCR_TORCH_THREADS", "int", "1",
           "intra-op threads per recognition worker (one worker per core is faster than more threads)",
           minimum=1),
    # The same names as ocr_core.runtime.ENGINES (a unit test keeps them equal).
    Option("OCR_RECOGNIZER_ENGINE", "str", "onnxruntime",
           "what runs the recognizer: onnxruntime on an export of the weights (faster), or torch",
           choices=("onnxruntime", "torch")),
    # The same names as ocr_core.quantized.PRECISIONS (a unit test keeps them equal).
    Option("OCR_RECOGNIZER_PRECISION", "str", "auto",
           "the recognizer's first reading: `int8` runs its CNN's 1x1 convolutions in int8 "
           "(onnxruntime; the shipped `crnn-int8.pt`, fine-tuned for it, unless `OCR_MODEL_PATH` names "
           "weights that carry int8 ranges: `python -m ocr_core.train.qat` learns them, `python -m "
           "ocr_core.train.calibrate` measures them after training), `fp32` never (the shipped "
           "`crnn.pt`); `auto`: int8 on CPUs with VNNI, else fp32. Part of the model version, so of "
           "the key namespace",
           choices=("auto", "int8", "fp32")),
    Option("OCR_LOG_LEVEL", "str", "INFO", "log level of the origin, gunicorn and the CLI",
           choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Option("OCR_RESULT_MAX_AGE", "int", str(7 * 24 * 3600), "Cache-Control max-age of stored results (seconds)",
           minimum=0),
    Option("OCR_ERROR_MAX_AGE", "int", "60",
           "Cache-Control max-age of a GET 4xx (unknown key), short so a CDN never pins it", minimum=0),
    Option("OCR_RATE_LIMIT", "float", "10",
           "uploads per second per client (API key, else address), shared by all origins through "
           "Redis; `0` turns the limit off; over it: 429 with `Retry-After`", minimum=0),
    Option("OCR_RATE_BURST", "int", "100", "uploads a client may send at once before the rate applies",
           minimum=1),
    Option("OCR_RATE_PIXELS", "int", "10000000",
           "decoding is charged to the same budget: an image of more pixels (a PDF: all its pages "
           "as rendered) takes one more upload of the rate per started `OCR_RATE_PIXELS` (a 40 MP "
           "image counts as 4 uploads); `0`: every upload counts as one", minimum=0),
    Option("OCR_API_KEYS_FILE", "optional", "",
           "file of SHA-256 hashes of the API keys allowed to upload, one `name:hexdigest` a line; "
           "unset: uploads need no key (results are public either way)"),
    # the recognition queue (origin/jobs.py, origin/worker.py) ------------------------------------
    Option("OCR_QUEUE", "str", "ocr",
           "RQ queue name (Redis list `rq:queue:<name>`); the origins and workers of a deployment share it"),
    Option("OCR_SYNC_WAIT_S", "float", "10", "how long `POST /ocr` waits for its job before answering `202`",
           minimum=0, maximum=60),
    Option("OCR_JOB_TIMEOUT_MIN_S", "int", "60", "a job's time limit: at least this (seconds) ...", minimum=1),
    Option("OCR_JOB_SECONDS_PER_MPX", "float", "10",
           "... plus this per million pixels read (~4x a dense page on an idle core) ...", minimum=0),
    Option("OCR_JOB_TIMEOUT_MAX_S", "int", "900", "... and at most this", minimum=1),
    Option("OCR_JOB_RETRIES", "int", "1", "runs of a job whose worker died mid-job", minimum=0, maximum=5),
    Option("OCR_WORKER_NICE", "int", "10",
           "CPU priority of recognition workers (`nice`): origins on the same machine answer first",
           minimum=0, maximum=19),
    Option("OCR_PDF_DPI", "int", "200", "PDF pages are rendered at this resolution", minimum=36, maximum=600),
    Option("OCR_PDF_MAX_PAGES", "int", "20", "more pages: `413 too_many_pages`", minimum=1),
    Option("OCR_BATCH_MAX_ITEMS", "int", "100", "images (or ZIP entries) per batch", minimum=1),
    Option("OCR_BATCH_MAX_BYTES", "int", str(200 * 1024 * 1024), "a batch ZIP's total inflated size",
           readme_default="`209715200` (200 MiB)", minimum=1),
    # deployment: launcher, gunicorn, nginx ------------------------------------------------------
    Option("OCR_VAR_DIR", "str", "var",
           "where `make run` / `make stop` keep data, logs and pids (the tests point it at a temp dir)"),
    Option("OCR_HTTP_PORT", "int", "8080", "nginx port (`make run`)", minimum=1, maximum=65535),
    Option("OCR_ORIGIN_PORT", "int", "8000", "gunicorn port on 127.0.0.1 (`make run`, `ocr-origin serve`)",
           minimum=1, maximum=65535),
    Option("OCR_REDIS_PORT", "int", "6379",
           "redis-server port on 127.0.0.1 (`make run`); also the port of the default `OCR_REDIS_URL`",
           minimum=1, maximum=65535),
    Option("OCR_BIND", "str", "127.0.0.1:{OCR_ORIGIN_PORT}", "gunicorn listen address",
           readme_default="`127.0.0.1:${OCR_ORIGIN_PORT}`"),
    Option("OCR_WORKERS", "int", _default_workers, "gunicorn worker processes (no model in them)",
           readme_default="cores, at least 2", minimum=1),
    Option("OCR_WEB_THREADS", "int", "16",
           "threads per gunicorn worker (requests mostly wait on Redis, storage or their job)", minimum=1),
    Option("OCR_RECOGNITION_WORKERS", "int", lambda env: str(os.cpu_count() or 1),
           "`ocr-origin worker` processes `make run` starts (0: none)", readme_default="cores", minimum=0),
    Option("OCR_WORKER_TIMEOUT", "int", "120", "gunicorn worker timeout (seconds); nginx gives up at 120 s",
           minimum=1),
    Option("OCR_MAX_REQUESTS", "int", "5000", "requests before a gunicorn worker is recycled (0: never)",
           minimum=0),
    Option("OCR_MAX_REQUESTS_JITTER", "int", lambda env: str(OPTIONS["OCR_MAX_REQUESTS"].parse(env) // 4),
           "random extra requests per worker, so workers sharing the load never recycle together",
           readme_default="a quarter of `OCR_MAX_REQUESTS`", minimum=0),
    Option("OCR_FORWARDED_ALLOW_IPS", "str", "127.0.0.1,::1",
           "proxies whose X-Forwarded-* headers gunicorn trusts and whose X-Real-IP names the client "
           "for the rate limit (`*`: any)"),
    Option("OCR_ACCESS_LOG", "str", "-", "gunicorn access log (`-`: stderr)"),
    Option("OCR_ERROR_LOG", "str", "-", "gunicorn error log (`-`: stderr)"),
    Option("OCR_NGINX_CACHE_MAX_SIZE", "str", "1g", "disk cap of nginx's results cache"),
    Option("OCR_WSGI_APP", "str", "origin.wsgi:app", "WSGI app the launcher serves (only to debug the launcher)"),
)
OPTIONS: dict[str, Option] = {o.name: o for o in _OPTIONS}


def get(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The parsed value of option `name` in `environ` (default: os.environ)."""
    return OPTIONS[name].parse(os.environ if environ is None else environ)


def load_secret(environ: Mapping[str, str]) -> bytes:
    """OCR_SECRET, else the file OCR_SECRET_FILE (default var/secret, created by `make run`).

    Never generated here: every origin of a deployment must share one secret, or the same image
    would get a different key on each origin.
    """
    secret_env = get("OCR_SECRET", environ)
    if secret_env:
        secret = secret_env.encode()
        source = "OCR_SECRET"
    else:
        path = Path(get("OCR_SECRET_FILE", environ))
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"no key secret: set OCR_SECRET or create {path} "
                              f"(e.g. `head -c 32 /dev/urandom | base64 > {path}`): {exc}") from exc
        source = str(path)
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"the secret from {source} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages, logs and reports (a Redis URL
    may carry credentials: `redis://:password@host:port/db`, or `?password=` as redis-py allows)."""
    url = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _password = userinfo.partition(":")
    # without a colon the whole userinfo may be a password typed where a user name goes
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}://{shown}@{tail}"


def _d(name: str) -> Any:
    """A Settings field default: the option's default in an empty environment."""
    return field(default=OPTIONS[name].parse({}))


@dataclass(frozen=True)
class Settings:
    """What the origin app reads, parsed once by `from_env`; tests build it directly."""
    secret: bytes = field(repr=False)
    redis_url: str = field(default=OPTIONS["OCR_REDIS_URL"].parse({}), repr=False)  # may hold a password
    storage_url: str = _d("OCR_STORAGE_URL")
    s3_endpoint_url: str | None = None
    max_upload_bytes: int = _d("OCR_MAX_UPLOAD_BYTES")
    max_pixels: int = _d("OCR_MAX_PIXELS")
    hamming_distance: int = _d("OCR_HAMMING_DISTANCE")
    model_path: str | None = None
    torch_threads: int = _d("OCR_TORCH_THREADS")
    recognizer_engine: str = _d("OCR_RECOGNIZER_ENGINE")
    recognizer_precision: str = _d("OCR_RECOGNIZER_PRECISION")
    detector_path: str | None = None
    log_level: str = _d("OCR_LOG_LEVEL")
    result_max_age: int = _d("OCR_RESULT_MAX_AGE")
    error_max_age: int = _d("OCR_ERROR_MAX_AGE")
    max_candidates: int = _d("OCR_MAX_CANDIDATES")
    rate_limit: float = _d("OCR_RATE_LIMIT")
    rate_burst: int = _d("OCR_RATE_BURST")
    rate_pixels: int = _d("OCR_RATE_PIXELS")
    api_keys_file: str | None = None
    forwarded_allow_ips: str = _d("OCR_FORWARDED_ALLOW_IPS")
    queue_name: str = _d("OCR_QUEUE")
    sync_wait_s: float = _d("OCR_SYNC_WAIT_S")
    job_timeout_min_s: int = _d("OCR_JOB_TIMEOUT_MIN_S")
    job_seconds_per_mpx: float = _d("OCR_JOB_SECONDS_PER_MPX")
    job_timeout_max_s: int = _d("OCR_JOB_TIMEOUT_MAX_S")
    job_retries: int = _d("OCR_JOB_RETRIES")
    worker_nice: int = _d("OCR_WORKER_NICE")
    pdf_dpi: int = _d("OCR_PDF_DPI")
    pdf_max_pages: int = _d("OCR_PDF_MAX_PAGES")
    batch_max_items: int = _d("OCR_BATCH_MAX_ITEMS")
    batch_max_bytes: int = _d("OCR_BATCH_MAX_BYTES")

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"secret shorter than {MIN_SECRET_BYTES} bytes")
        hamming = OPTIONS["OCR_HAMMING_DISTANCE"]
        if not hamming.minimum <= self.hamming_distance <= hamming.maximum:  # type: ignore[operator]
            raise ConfigError(f"OCR_HAMMING_DISTANCE must be {hamming.minimum:.0f}..{hamming.maximum:.0f}")
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
            redis_url=get("OCR_REDIS_URL", environ),
            storage_url=get("OCR_STORAGE_URL", environ),
            s3_endpoint_url=get("OCR_S3_ENDPOINT_URL", environ),
            max_upload_bytes=get("OCR_MAX_UPLOAD_BYTES", environ),
            max_pixels=get("OCR_MAX_PIXELS", environ),
            hamming_distance=get("OCR_HAMMING_DISTANCE", environ),
            max_candidates=get("OCR_MAX_CANDIDATES", environ),
            model_path=get("OCR_MODEL_PATH", environ),
            torch_threads=get("OCR_TORCH_THREADS", environ),
            recognizer_engine=get("OCR_RECOGNIZER_ENGINE", environ),
            recognizer_precision=get("OCR_RECOGNIZER_PRECISION", environ),
            detector_path=get("OCR_DETECTOR_PATH", environ),
            log_level=get("OCR_LOG_LEVEL", environ).upper(),
            result_max_age=get("OCR_RESULT_MAX_AGE", environ),
            error_max_age=get("OCR_ERROR_MAX_AGE", environ),
            rate_limit=get("OCR_RATE_LIMIT", environ),
            rate_burst=get("OCR_RATE_BURST", environ),
            rate_pixels=get("OCR_RATE_PIXELS", environ),
            api_keys_file=get("OCR_API_KEYS_FILE", environ),
            forwarded_allow_ips=get("OCR_FORWARDED_ALLOW_IPS", environ),
            queue_name=get("OCR_QUEUE", environ),
            sync_wait_s=get("OCR_SYNC_WAIT_S", environ),
            job_timeout_min_s=get("OCR_JOB_TIMEOUT_MIN_S", environ),
            job_seconds_per_mpx=get("OCR_JOB_SECONDS_PER_MPX", environ),
            job_timeout_max_s=get("OCR_JOB_TIMEOUT_MAX_S", environ),
            job_retries=get("OCR_JOB_RETRIES", environ),
            worker_nice=get("OCR_WORKER_NICE", environ),
            pdf_dpi=get("OCR_PDF_DPI", environ),
            pdf_max_pages=get("OCR_PDF_MAX_PAGES", environ),
            batch_max_items=get("OCR_BATCH_MAX_ITEMS", environ),
            batch_max_bytes=get("OCR_BATCH_MAX_BYTES", environ),
        )


def readme_table() -> str:
    """The README "Configuration" table rows, generated from OPTIONS (tests compare them)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{o.name}` | {o.readme()} | {o.doc} |" for o in _OPTIONS]
    return "\n".join(rows)
