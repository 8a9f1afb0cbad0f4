"""Every Redis key the project writes, in one place.

All keys start with `ocr:v1:`; bump the version segment when a format below changes, so an old
index is ignored (and can be rebuilt with `python -m cache reindex`) instead of misread.

    ocr:v1:band:{ns}:{d}:{i}:{value}   SET of ints   multi-index band i (of a scheme for radius d):
                                                     pHashes whose band i equals value, stored as
                                                     the remaining bits (an int < 2**53: intset
                                                     encoded, exact in Lua's doubles)
    ocr:v1:ph:{ns}:{phash16}           ZSET          result keys with that pHash, score = created
                                                     unix time (newest first on lookup)
    ocr:v1:lock:{ns}:{pixel_digest}    STRING        single-flight token, SET NX PX
"""
from __future__ import annotations

PREFIX = "ocr:v1:"


def band(ns: str, radius: int, index: int, value: int) -> str:
    return f"{PREFIX}band:{ns}:{radius}:{index}:{value}"


def phash_members(ns: str, phash_hex: str) -> str:
    return f"{PREFIX}ph:{ns}:{phash_hex}"


def lock(ns: str, pixel_digest: str) -> str:
    return f"{PREFIX}lock:{ns}:{pixel_digest}"


def index_patterns() -> tuple[str, ...]:
    """SCAN patterns of every index key (bands and pHash members), not locks."""
    return (f"{PREFIX}band:*", f"{PREFIX}ph:*")
