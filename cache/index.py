"""Near-duplicate index in Redis: multi-index hashing over 64-bit pHashes.

Multi-index hashing (Norouzi et al., CVPR 2012): split the 64-bit hash into m bands. If two hashes
are within Hamming distance d, their m bands differ in d bits in total, so (pigeonhole) at least
one band differs in at most r = ⌊d / m⌋ bits. A lookup therefore reads, for every band, the
buckets of all values within r bits of the query's band value, and finds *every* stored hash
within d without scanning.

Layout: m = 3 bands of 22/21/21 bits, fixed whatever d is, so changing OCR_HAMMING_DISTANCE
needs no reindex. With d = 4 (the default, README "Keys and reuse") r = 1: 3 × (1 + 21..22) = 67
buckets per lookup, one round trip (a Lua script). The query's least stable bits
(fingerprint.UNSTABLE_BITS) are not counted: their buckets are read for both values, so 4 such
bits make 168-350 buckets. Why not the textbook m = d + 1 exact bands (5 × 13 bits): a 13-bit
bucket holds n / 8,192 hashes, ~1,200 at 10^7, so each lookup filters ~6,000 members and the sets
outgrow Redis's compact intset encoding (512 members), which doubles the memory (measured with
that layout: 9.4 ms p50 and 516 B per result at 10^7; this one: docs/benchmarks.md).

Each band set holds, for every stored pHash whose band i has that value, the *other* 42-43 bits
as an integer: small sets of integers use the intset encoding, and values below 2**53 are exact
in Lua's doubles, so the script computes Hamming distances on the server and returns only true
matches. A second key per pHash lists the result keys that have it (newest first, capped).

Redis is an accelerator, never the source of truth: every method raises IndexUnavailable on any
Redis problem, quickly (no retries, 0.2 s connect / 0.5 s read timeouts) and, after a failure,
immediately for `breaker_cooldown` seconds without touching the network (circuit breaker), so an
outage costs uploads nothing but dedup.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import redis_keys
from .errors import IndexUnavailable
from .fingerprint import PHASH_BITS, fine_distance, format_phash

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Results remembered per identical pHash. Documents from one template share a pHash (docs/facts.md §2);
# the newest ones are the likeliest re-uploads, and an evicted one only costs a MISS.
MAX_KEYS_PER_PHASH = 64
# Re-encodes and resizes of a page move its pHash by 0-4 bits, rarely 6, and pHash distances
# come in pairs (README "Keys and reuse"). Up to 5 the lookup stays at r = 1 (67 buckets); 6
# would need r = 2 (~700 buckets per lookup).
MAX_RADIUS = 5
BAND_COUNT = 3
# Each unstable query bit doubles the buckets read in its band: 4 cost 168-350 buckets per lookup.
MAX_UNSTABLE_BITS = 6
# With a fine hash, this many times `limit` pHash candidates are ranked by it before the nearest
# `limit` are verified: pages of one template crowd the same pHash (issue 16 item 6).
FINE_POOL_FACTOR = 8

# KEYS[1..n]: the probed band sets.
# ARGV[1]: max distance d; ARGV[2]: m (bands); ARGV[3..2+m]: the query's remaining bits for band i
# (decimal, < 2**53); ARGV[3+m..2+2m]: which of those remaining bits count (the others are the
# query's unstable bits, ignored); ARGV[3+2m..2+2m+n]: the band (1-based) of KEYS[j];
# ARGV[3+2m+n..2+2m+2n]: how many counted bits KEYS[j]'s band value differs from the query's.
# Returns a flat array: j (1-based index into KEYS), stored remaining bits (string), distance, ...
_FILTER_LUA = """
local function popcount(x)
  x = x - bit.band(bit.rshift(x, 1), 0x55555555)
  x = bit.band(x, 0x33333333) + bit.band(bit.rshift(x, 2), 0x33333333)
  x = bit.band(x + bit.rshift(x, 4), 0x0F0F0F0F)
  x = x + bit.rshift(x, 8)
  x = x + bit.rshift(x, 16)
  return bit.band(x, 0x3F)
end
local TWO32 = 4294967296
local d = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local n = #KEYS
local qhi, qlo, mhi, mlo = {}, {}, {}, {}
for i = 1, m do
  local q = tonumber(ARGV[2 + i])
  qhi[i] = math.floor(q / TWO32)
  qlo[i] = q - qhi[i] * TWO32
  local k = tonumber(ARGV[2 + m + i])
  mhi[i] = math.floor(k / TWO32)
  mlo[i] = k - mhi[i] * TWO32
end
local out = {}
for j = 1, n do
  local band = tonumber(ARGV[2 + 2 * m + j])
  local base = tonumber(ARGV[2 + 2 * m + n + j])
  local members = redis.call('SMEMBERS', KEYS[j])
  for _, s in ipairs(members) do
    local r = tonumber(s)
    local hi = math.floor(r / TWO32)
    local lo = r - hi * TWO32
    local dist = base + popcount(bit.band(bit.bxor(hi, qhi[band]), mhi[band]))
                      + popcount(bit.band(bit.bxor(lo, qlo[band]), mlo[band]))
    if dist <= d then
      out[#out + 1] = j
      out[#out + 1] = s
      out[#out + 1] = dist
    end
  end
end
return out
"""

# How long Redis remembers which key some exact upload bytes got (forgetting costs one decode).
BYTES_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True)
class Candidate:
    key: str
    phash: int
    distance: int
    fine_distance: int | None = None  # bits from the query's fine hash (None: not compared)


class ResultIndex(Protocol):
    """Finds earlier results whose pHash is near a query. Raises IndexUnavailable when down."""

    def candidates(self, namespace: str, phash: int, *, limit: int = 8, unstable: int = 0,
                   fine: bytes = b"") -> list[Candidate]: ...
    def record(self, namespace: str, key: str, phash: int, *, created_at: float, fine: bytes = b"") -> None: ...
    def key_for_bytes(self, namespace: str, sha256_hex: str) -> str | None: ...
    def record_bytes(self, namespace: str, sha256_hex: str, key: str) -> None: ...
    def ping(self) -> None: ...


@dataclass(frozen=True)
class Band:
    start: int   # lowest bit of the band
    length: int

    @property
    def mask(self) -> int:
        return (1 << self.length) - 1

    def value(self, h: int) -> int:
        return (h >> self.start) & self.mask

    def rest(self, h: int) -> int:
        """The hash without this band's bits (64 - length bits)."""
        low = h & ((1 << self.start) - 1)
        return ((h >> (self.start + self.length)) << self.start) | low

    def join(self, value: int, rest: int) -> int:
        low = rest & ((1 << self.start) - 1)
        high = rest >> self.start
        return (high << (self.start + self.length)) | (value << self.start) | low

    def neighbours(self, value: int, radius: int, free: int = 0) -> Iterator[tuple[int, int]]:
        """(v, bits) for every band value v within `radius` bits of `value`, counting only bits
        outside `free` (a mask of band bits that may take any value)."""
        free_bits = [b for b in range(self.length) if free >> b & 1]
        counted = [b for b in range(self.length) if not free >> b & 1]
        for bits in range(radius + 1):
            for flips in itertools.combinations(counted, bits):
                v = value & ~free
                for b in flips:
                    v ^= 1 << b
                for choice in range(1 << len(free_bits)):
                    w = v
                    for n, b in enumerate(free_bits):
                        if choice >> n & 1:
                            w |= 1 << b
                    yield w, bits


def make_bands(count: int = BAND_COUNT) -> list[Band]:
    """`count` bands covering the 64 bits, sizes as equal as possible (22/21/21 for 3)."""
    out, start = [], 0
    for i in range(count):
        length = PHASH_BITS // count + (1 if i < PHASH_BITS % count else 0)
        out.append(Band(start, length))
        start += length
    # the rest of a hash without one band must stay exact in Lua's doubles
    assert all(PHASH_BITS - b.length <= 53 for b in out), out
    return out


BANDS = make_bands()


def probe_radius(radius: int) -> int:
    """Bits in which a probed band value may differ from the query's (pigeonhole: ⌊d / m⌋)."""
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"Hamming radius must be 0..{MAX_RADIUS}, got {radius}")
    return radius // len(BANDS)


class CircuitBreaker:
    """After a failure, fail fast for `cooldown` seconds, then let one call try again."""

    def __init__(self, cooldown: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def allow(self) -> bool:
        with self._lock:
            now = self._clock()
            if now < self._open_until:
                return False
            if self._open_until:
                # half-open: this caller probes; others keep failing fast until it reports back
                self._open_until = now + self.cooldown
            return True

    def success(self) -> None:
        with self._lock:
            self._open_until = 0.0

    def failure(self) -> None:
        with self._lock:
            self._open_until = self._clock() + self.cooldown


def make_client(url: str) -> redis.Redis:
    """redis-py client that fails fast: redis-py's defaults retry and wait ~4-10 s (docs/facts.md §4)."""
    return redis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=0.2,
        socket_timeout=0.5,
        health_check_interval=0,
    )


class RedisResultIndex:
    """`ResultIndex` on one Redis connection pool. (Single flight is the job queue's now: one
    RQ job per result key, origin/jobs.py.)"""

    def __init__(self, client: redis.Redis, *, radius: int = 4, breaker_cooldown: float = 2.0,
                 max_keys_per_phash: int = MAX_KEYS_PER_PHASH) -> None:
        self.client = client
        self.radius = radius
        self.bands = BANDS
        self.probe = probe_radius(radius)
        self.max_keys_per_phash = max_keys_per_phash
        self.breaker = CircuitBreaker(breaker_cooldown)
        self._filter = client.register_script(_FILTER_LUA)

    @classmethod
    def from_url(cls, url: str, **kwargs) -> "RedisResultIndex":
        return cls(make_client(url), **kwargs)

    def __repr__(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return f"<RedisResultIndex redis://{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)} d={self.radius}>"

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        if not self.breaker.allow():
            raise IndexUnavailable(f"redis circuit open ({op})")
        try:
            result = fn()
        except redis.RedisError as exc:
            self.breaker.failure()
            logger.warning("redis failed op=%s error=%s", op, exc)
            raise IndexUnavailable(f"redis {op} failed: {exc}") from exc
        self.breaker.success()
        return result

    def _band_keys(self, ns: str, phash: int) -> list[str]:
        return [redis_keys.band(ns, i, b.value(phash)) for i, b in enumerate(self.bands)]

    def _probes(self, ns: str, phash: int, unstable: int) -> list[tuple[str, int, int, int]]:
        """(set key, band index, band value, counted bits from the query's band value) to read."""
        return [(redis_keys.band(ns, i, v), i, v, bits)
                for i, band in enumerate(self.bands)
                for v, bits in band.neighbours(band.value(phash), self.probe, band.value(unstable))]

    # ResultIndex ---------------------------------------------------------------------------
    def candidates(self, namespace: str, phash: int, *, limit: int = 8, unstable: int = 0,
                   fine: bytes = b"") -> list[Candidate]:
        """Result keys whose pHash is within the radius, nearest first, newest first per pHash.

        `unstable`: bits of the query that are not counted (fingerprint.UNSTABLE_BITS; every
        extra bit doubles the buckets read in its band). `Candidate.distance` is the full one.
        `fine` (fingerprint.fine_hash): up to FINE_POOL_FACTOR x `limit` candidates are ranked
        by their recorded fine hash (nearest first; those without one after, by pHash) and the
        first `limit` returned, so the true duplicate among look-alikes is tried first.
        """
        want = limit * FINE_POOL_FACTOR if fine else limit
        if bin(unstable).count("1") > MAX_UNSTABLE_BITS:
            raise ValueError(f"at most {MAX_UNSTABLE_BITS} unstable bits")
        probes = self._probes(namespace, phash, unstable)
        args = ([self.radius, len(self.bands)] + [b.rest(phash) for b in self.bands]
                + [b.rest(~unstable & (1 << PHASH_BITS) - 1) for b in self.bands]
                + [i + 1 for _, i, _, _ in probes] + [bits for _, _, _, bits in probes])

        def lookup() -> list[Candidate]:
            flat = self._filter(keys=[k for k, _, _, _ in probes], args=args)
            found: set[int] = set()
            for n in range(0, len(flat), 3):
                _, i, value, _ = probes[int(flat[n]) - 1]
                found.add(self.bands[i].join(value, int(flat[n + 1])))  # may come through several bands
            if not found:
                return []
            ordered = sorted((bin(h ^ phash).count("1"), h) for h in found)
            out: list[Candidate] = []
            # Near a crowded template hundreds of pHashes match; every one has at least one key,
            # so the nearest `limit` usually suffice: read key lists in batches of `limit`.
            for start in range(0, len(ordered), limit):
                batch = ordered[start:start + limit]
                pipe = self.client.pipeline(transaction=False)
                for _, h in batch:
                    pipe.zrevrange(redis_keys.phash_members(namespace, format_phash(h)), 0, want - 1)
                for (dist, h), members in zip(batch, pipe.execute()):
                    out.extend(Candidate(m.decode(), h, dist) for m in members)
                if len(out) >= want:
                    break
            out = out[:want]
            if fine and out:
                out = self._rank_fine(namespace, out, fine)
            return out[:limit]

        return self._call("candidates", lookup)

    def _rank_fine(self, ns: str, found: list[Candidate], fine: bytes) -> list[Candidate]:
        """`found` reordered by fine-hash distance (stable: pHash order breaks ties), then those
        without a recorded fine hash (older entries: reindex adds them)."""
        stored = self.client.hmget(redis_keys.fine_hashes(ns), [c.key for c in found])
        ranked = [replace(c, fine_distance=fine_distance(fine, f)
                          if isinstance(f, bytes) and len(f) == len(fine) else None)  # Redis is not trusted
                  for c, f in zip(found, stored)]
        return sorted(ranked, key=lambda c: (c.fine_distance is None, c.fine_distance or 0))

    def _queue_record(self, pipe: redis.client.Pipeline, ns: str, key: str, phash: int, created: float,
                      fine: bytes = b"") -> None:
        for band_key, band in zip(self._band_keys(ns, phash), self.bands):
            pipe.sadd(band_key, band.rest(phash))
        ph_key = redis_keys.phash_members(ns, format_phash(phash))
        pipe.zadd(ph_key, {key: created}, nx=True)
        pipe.zremrangebyrank(ph_key, 0, -(self.max_keys_per_phash + 1))
        if fine:
            pipe.hset(redis_keys.fine_hashes(ns), key, fine)

    def record(self, namespace: str, key: str, phash: int, *, created_at: float, fine: bytes = b"") -> None:
        """Add a stored result to the index (idempotent). Call only once the result is stored."""
        def write() -> None:
            # one MULTI/EXEC: a crash never leaves a band entry without its key list
            pipe = self.client.pipeline(transaction=True)
            self._queue_record(pipe, namespace, key, phash, created_at, fine)
            pipe.execute()

        self._call("record", write)

    def record_many(self, items: Iterable[tuple[str, str, int, float, bytes]], *, batch: int = 1000) -> int:
        """Record (namespace, key, phash, created_at, fine hash or b"") tuples in pipelined
        batches; returns the count."""
        n = 0
        pipe = self.client.pipeline(transaction=False)
        for ns, key, phash, created, fine in items:
            self._queue_record(pipe, ns, key, phash, created, fine)
            n += 1
            if n % batch == 0:
                self._call("record_many", pipe.execute)
        self._call("record_many", pipe.execute)
        return n

    def clear(self) -> int:
        """Delete every index key (all namespaces, older layouts too); locks are left alone."""
        def run() -> int:
            deleted = 0
            for pattern in redis_keys.index_patterns():
                batch: list[bytes] = []
                for k in self.client.scan_iter(match=pattern, count=1000):
                    batch.append(k)
                    if len(batch) >= 1000:
                        deleted += self.client.unlink(*batch)
                        batch = []
                if batch:
                    deleted += self.client.unlink(*batch)
            return deleted
        return self._call("clear", run)

    def ping(self) -> None:
        self._call("ping", self.client.ping)

    # exact upload bytes -> key: a repeat upload is answered without decoding it ----------------
    def key_for_bytes(self, namespace: str, sha256_hex: str) -> str | None:
        """The result key recorded for these exact upload bytes, if any (the caller checks it)."""
        raw = self._call("bytes_get", lambda: self.client.get(redis_keys.upload_bytes(namespace, sha256_hex)))
        return raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw

    def record_bytes(self, namespace: str, sha256_hex: str, key: str, *, ttl_s: int = BYTES_TTL_S) -> None:
        self._call("bytes_set", lambda: self.client.set(redis_keys.upload_bytes(namespace, sha256_hex), key,
                                                        ex=ttl_s))
