"""Who may upload, and how often: optional API keys and a per-client rate limit.

Both guard POST /ocr only; result URLs stay public (their keys are unguessable HMACs).

API keys (OCR_API_KEYS_FILE): the file holds SHA-256 hex digests, never the keys themselves,
one `name:digest` (or a bare digest) a line, `#` comments allowed. A presented key is hashed and
compared with every digest in constant time, so timing says nothing about how much matched.
Create one with `printf %s "$KEY" | sha256sum`.

Rate limit (OCR_RATE_LIMIT, OCR_RATE_BURST): a token bucket per client in Redis
(cache/limiter.py), so every origin behind the CDN shares one budget. Decoding is paid from it
too: an image larger than OCR_RATE_PIXELS counts as one upload per started OCR_RATE_PIXELS,
charged from its header before a pixel is decoded (PixelCharge). The client is the API
key's name when keys are on, else its address (nginx's X-Real-IP when the peer is a trusted
proxy, OCR_FORWARDED_ALLOW_IPS). When Redis is down or unset, requests are let through and
counted: the limiter must never be the outage.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable

from flask import Request, current_app, request

from cache.errors import IndexUnavailable
from cache.limiter import RedisRateLimiter

from . import metrics
from .errors import TooManyRequests, Unauthorized
from .settings import ConfigError, Settings
from .units import human_pixels

logger = logging.getLogger(__name__)

_DIGEST = re.compile(r"[0-9a-f]{64}")


def load_api_keys(path: str | Path) -> dict[str, bytes]:
    """name -> SHA-256 digest of each allowed key; ConfigError when the file is unusable."""
    keys: dict[str, bytes] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"OCR_API_KEYS_FILE {path} cannot be read: {exc}") from exc
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, digest = line.rpartition(":")
        digest = digest.strip().lower()
        if not _DIGEST.fullmatch(digest):
            raise ConfigError(f"{path}:{n}: expected `name:sha256hex` (64 hex digits)")
        keys[name.strip() or f"key{n}"] = bytes.fromhex(digest)
    if not keys:
        raise ConfigError(f"OCR_API_KEYS_FILE {path} lists no keys: every upload would be refused")
    return keys


class UploadGate:
    """The one check at the top of the upload route."""

    def __init__(self, settings: Settings, limiter: RedisRateLimiter | None) -> None:
        self.keys = load_api_keys(settings.api_keys_file) if settings.api_keys_file else None
        self.limiter = limiter
        self.pixels_per_token = settings.rate_pixels
        trusted = {a.strip() for a in settings.forwarded_allow_ips.split(",") if a.strip()}
        self.trust_any_proxy = "*" in trusted
        self.trusted_proxies = trusted

    def __repr__(self) -> str:
        return f"<UploadGate keys={len(self.keys) if self.keys else 'off'} limiter={self.limiter!r}>"

    def client_address(self, req: Request) -> str:
        peer = req.environ.get("REMOTE_ADDR", "")
        forwarded = req.headers.get("X-Real-IP", "").strip()
        if forwarded and (self.trust_any_proxy or peer in self.trusted_proxies):
            return forwarded
        return peer or "unknown"

    def authenticate(self, req: Request) -> str | None:
        """The key's name, None when keys are off; raises Unauthorized."""
        if self.keys is None:
            return None
        auth = req.headers.get("Authorization", "")
        presented = auth[7:].strip() if auth[:7].lower() == "bearer " else req.headers.get("X-API-Key", "")
        if not presented:
            metrics.AUTH_FAILED.inc()
            raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="ocr-origin"'})
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for name, allowed in self.keys.items():  # no early exit: time does not depend on which
            if hmac.compare_digest(digest, allowed):
                found = name
        if found is None:
            metrics.AUTH_FAILED.inc()
            raise Unauthorized("unknown API key", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return found

    def check(self, req: Request) -> Callable[[int], None] | None:
        """API key and one upload's worth of rate; returns the request's pixel charge (None
        without a limiter)."""
        name = self.authenticate(req)
        if self.limiter is None:
            return None
        client = f"key:{name}" if name is not None else f"ip:{self.client_address(req)}"
        self.take(client, 1, "")
        return PixelCharge(self, client)

    def take(self, client: str, cost: int, why: str) -> None:
        """Take `cost` uploads' worth from `client`'s bucket or raise 429; lets the request
        through when Redis cannot be reached."""
        assert self.limiter is not None
        try:
            wait = self.limiter.take(client, min(cost, self.limiter.burst))  # more could never pass
        except IndexUnavailable as exc:
            metrics.LIMITER_ERRORS.inc()
            logger.warning("rate limit skipped client=%s error=%s", client, exc)
            return
        if wait > 0:
            metrics.RATE_LIMITED.inc()
            retry = max(1, math.ceil(wait))
            logger.info("rate limited client=%s cost=%d retry_after=%d", client, cost, retry)
            raise TooManyRequests(f"{why}more than {self.limiter.rate:g} uploads/s (bursts of "
                                  f"{self.limiter.burst}) from this client; retry in {retry} s",
                                  headers={"Retry-After": str(retry)})


class PixelCharge:
    """Decoding paid from the client's upload budget, so that many cheap files announcing huge
    images cannot buy a core each (issue 16 item 5): an image (or a PDF, all its pages' rendered
    pixels) takes one upload's worth per started OCR_RATE_PIXELS. The token taken at the door
    pays the first image's first share; every further image of the request (a batch) pays in full."""

    def __init__(self, gate: UploadGate, client: str) -> None:
        self.gate = gate
        self.client = client
        self.prepaid = 1

    def __call__(self, pixels: int) -> None:
        per_token = self.gate.pixels_per_token  # 0: an image counts as one upload, whatever its size
        cost = (max(1, math.ceil(pixels / per_token)) if per_token > 0 else 1) - self.prepaid
        self.prepaid = 0
        if cost > 0:
            self.gate.take(self.client, cost, f"this upload's {human_pixels(pixels)} to decode count as "
                                              f"{cost + 1} uploads: ")


def build_gate(settings: Settings, index: Any) -> UploadGate:
    """The gate for create_app: the limiter shares the index's Redis pool (none without Redis)."""
    limiter = None
    client = getattr(index, "client", None)
    if settings.rate_limit > 0 and client is not None:
        limiter = RedisRateLimiter(client, rate=settings.rate_limit, burst=settings.rate_burst)
    elif settings.rate_limit > 0:
        logger.warning("no Redis index: the upload rate limit is off")
    return UploadGate(settings, limiter)


def check_upload() -> Callable[[int], None] | None:
    """API key and rate limit for the current request (raises 401/429 OriginErrors); returns
    what to charge each image's pixels to (OcrService.submit's `charge`)."""
    return current_app.extensions["ocr_gate"].check(request)
