"""Result cache: fingerprints, private keys, the Redis near-duplicate index and result storage.

`cache` never imports `origin` or `ocr_core`.
"""
from __future__ import annotations

from .errors import CacheError, IndexUnavailable, InvalidKey, StorageUnavailable
from .fingerprint import Fingerprint, fingerprint, format_phash, parse_phash
from .index import Candidate, RedisResultIndex, ResultIndex
from .keys import KeyDeriver, is_valid_key, model_namespace, validate_key
from .store import FileResultStore, ResultStore, S3ResultStore, from_url

__all__ = [
    "CacheError", "IndexUnavailable", "InvalidKey", "StorageUnavailable",
    "Fingerprint", "fingerprint", "format_phash", "parse_phash",
    "Candidate", "RedisResultIndex", "ResultIndex",
    "KeyDeriver", "is_valid_key", "model_namespace", "validate_key",
    "FileResultStore", "ResultStore", "S3ResultStore", "from_url",
]
