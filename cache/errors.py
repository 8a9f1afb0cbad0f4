"""Errors raised by the cache package.

    CacheError
    ├── InvalidKey          a result key that does not match the key format (never reaches storage)
    ├── IndexUnavailable    Redis is down, slow or the circuit breaker is open: degrade, no dedup
    └── StorageUnavailable  the result store failed (anything but "absent"): the caller answers 503
"""
from __future__ import annotations


class CacheError(Exception):
    """Base of the errors raised by `cache`."""


class InvalidKey(CacheError, ValueError):
    """The string is not a well-formed result key."""


class IndexUnavailable(CacheError):
    """The Redis index cannot be used right now."""


class StorageUnavailable(CacheError):
    """The result store failed; absence is reported as None, never with this error."""
