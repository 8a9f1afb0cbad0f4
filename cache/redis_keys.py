"""Every Redis key the project writes, in one place.

All keys start with `ocr:v2:`; bump the version segment when a format below changes, so an old
index is ignored (and can be rebuilt with `python -m cache reindex`) instead of misread.
v1 (before the index had its fixed 3-band layout) used `ocr:v1:band:{ns}:{d}:{i}:{value}` with
5 bands of 13 bits; `clear()` still removes those keys. Before recognition moved to the queue,
`ocr:v2:lock:{ns}:{pixel_digest}` held single-flight tokens; they expired after 30 s.

    ocr:v2:b:{ns}:{i}:{value}          SET of ints   multi-index band i (0..2, cache/index.py):
                                                     pHashes whose band i equals value, stored as
                                                     the remaining bits (an int < 2**53: intset
                                                     encoded, exact in Lua's doubles). The short
                                                     `b` matters: there are ~6 M of these keys
                                                     at 10^7 results.
    ocr:v2:ph:{ns}:{phash16}           ZSET          result keys with that pHash, score = created
                                                     unix time (newest first on lookup)
    ocr:v2:fine:{ns}                   HASH          result key -> its 72-byte fine hash
                                                     (cache/fingerprint.py fine_hash), which ranks
                                                     the pHash candidates before verification
    ocr:v2:bytes:{ns}:{sha256}         STRING        result key an upload with exactly these bytes
                                                     got, so a repeat finds it without decoding
                                                     (checked against storage before use); EX 30 d
    ocr:v2:rate:{client_id}            HASH          upload token bucket {tokens, at} of one
                                                     client (cache/limiter.py), PEXPIRE when idle
    ocr:v2:model:{queue}               STRING        JSON {name, version, namespace} of the model the
                                                     workers of that queue run, written by each
                                                     worker at start; the origins derive keys with it
    ocr:v2:batch:{id}                  STRING        JSON of a batch: its items' names and keys
    ocr:v2:done:{key}                  STREAM        one entry, written by the worker the moment a
                                                     job's result is stored: wakes the uploads
                                                     waiting for it (origin/jobs.py); expires 90 s

The recognition queue itself is RQ's (origin/jobs.py): RQ keeps its keys under `rq:` (the queue
list `rq:queue:{queue}`, jobs `rq:job:{key}`, registries, results, workers). Their layout is RQ's
and versioned by RQ; the job id is our result key, so it changes with the model namespace.
"""
from __future__ import annotations

PREFIX = "ocr:v2:"
_LEGACY_INDEX_PATTERNS = ("ocr:v1:band:*", "ocr:v1:ph:*")


def band(ns: str, index: int, value: int) -> str:
    return f"{PREFIX}b:{ns}:{index}:{value}"


def phash_members(ns: str, phash_hex: str) -> str:
    return f"{PREFIX}ph:{ns}:{phash_hex}"


def model_identity(queue: str) -> str:
    return f"{PREFIX}model:{queue}"


def batch(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}"


def fine_hashes(ns: str) -> str:
    return f"{PREFIX}fine:{ns}"


def upload_bytes(ns: str, sha256_hex: str) -> str:
    return f"{PREFIX}bytes:{ns}:{sha256_hex}"


def rate_bucket(client_id: str) -> str:
    return f"{PREFIX}rate:{client_id}"


def job_done(key: str) -> str:
    return f"{PREFIX}done:{key}"


def index_patterns() -> tuple[str, ...]:
    """SCAN patterns of every index key (bands, pHash members, fine hashes and upload bytes,
    older layouts too): what `reindex --clear` removes."""
    return (f"{PREFIX}b:*", f"{PREFIX}ph:*", f"{PREFIX}fine:*", f"{PREFIX}bytes:*") + _LEGACY_INDEX_PATTERNS
