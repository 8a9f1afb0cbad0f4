"""Result keys: private, content-addressed, namespaced by model.

    key = ns(4) + body(28), 32 characters of lowercase RFC 4648 base32 (a-z, 2-7)
    ns   = base32(sha256("ocr-origin/ns/v1\\0" + model_name + "\\0" + model_version))[:4]
    body = base32(HMAC-SHA256(secret, "ocr-origin/key/v1\\0" + ns + "\\0" + pixel_digest))[:28]

* Private: without the server secret nobody can compute a key from an image (or its pHash).
* Content-addressed: one deployment shares one secret, so every origin derives the same key.
* Model namespace: a new model name or version gives a new 4-character prefix, so old results
  keep their URLs and are never served as the new model's answer. The prefix is public on
  purpose: operators can tell which model wrote a result from its URL.
* The pHash is not an input: it is a function of the same pixels, so it adds no information, and
  leaving it out keeps keys stable across imagehash/numpy upgrades (pHash only finds candidates).
* 28 base32 characters = 140 bits of HMAC output: collisions are not a concern.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

from .errors import InvalidKey

NS_LEN = 4
BODY_LEN = 28
KEY_LEN = NS_LEN + BODY_LEN
KEY_RE = re.compile(rf"[a-z2-7]{{{KEY_LEN}}}")
MIN_SECRET_BYTES = 16


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def model_namespace(model_name: str, model_version: str) -> str:
    """The 4-character key prefix of one model name + version."""
    if not model_name or not model_version:
        raise ValueError("model name and version are required for a key namespace")
    digest = hashlib.sha256(f"ocr-origin/ns/v1\0{model_name}\0{model_version}".encode()).digest()
    return _b32(digest)[:NS_LEN]


def validate_key(key: str) -> str:
    """Return `key` if it is a well-formed result key, else raise InvalidKey."""
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise InvalidKey("result keys are 32 characters of a-z and 2-7")
    return key


def is_valid_key(key: str) -> bool:
    return isinstance(key, str) and KEY_RE.fullmatch(key) is not None


def key_namespace(key: str) -> str:
    return validate_key(key)[:NS_LEN]


class KeyDeriver:
    """Derives result keys from pixel digests with the deployment's secret."""

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the key secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:  # never print the secret
        return "<KeyDeriver secret=***>"

    def derive(self, namespace: str, pixel_digest: str) -> str:
        if len(namespace) != NS_LEN or not re.fullmatch(r"[a-z2-7]+", namespace):
            raise ValueError(f"bad namespace {namespace!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", pixel_digest):
            raise ValueError("pixel digest must be 64 hex characters")
        mac = hmac.new(self._secret, f"ocr-origin/key/v1\0{namespace}\0{pixel_digest}".encode(), hashlib.sha256)
        return namespace + _b32(mac.digest())[:BODY_LEN]
