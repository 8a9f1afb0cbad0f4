"""Near-duplicate index in Redis: multi-index hashing over 64-bit pHashes, plus single flight.

Multi-index hashing (Norouzi et al., CVPR 2012): split the 64-bit hash into m = d + 1 bands. Two
hashes within Hamming distance d differ in at most d bands, so (pigeonhole) at least one band is
identical: exact lookups of the m band values of the query find *every* stored hash within d,
without scanning. d = 4 gives 5 bands of 13/13/13/13/12 bits.

Each band set holds, for every stored pHash whose band i has that value, the *other* 51-52 bits
as an integer. Integers keep small sets in Redis's compact intset encoding, and values below 2**53
are exact in Lua's doubles, so one Lua script can compute the Hamming distance on the server and
return only true matches (one round trip even when a band bucket holds thousands of members).
A second key per pHash lists the result keys that have it (newest first, capped).

Redis is an accelerator, never the source of truth: every method raises IndexUnavailable on any
Redis problem, quickly (no retries, 0.2 s connect / 0.5 s read timeouts) and, after a failure,
immediately for `breaker_cooldown` seconds without touching the network (circuit breaker), so an
outage costs uploads nothing but dedup.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import redis_keys
from .errors import IndexUnavailable
from .fingerprint import PHASH_BITS, format_phash

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Results remembered per identical pHash. Documents from one template share a pHash (NOTES §2);
# the newest ones are the likeliest re-uploads, and an evicted one only costs a MISS.
MAX_KEYS_PER_PHASH = 64
# With d + 1 bands the remaining bits must stay below 2**53 to be exact in Lua: d <= 4 (bands of
# 12-13 bits, rests of 51-52 bits). Re-encodes and resizes move a document pHash by 0-2 (NOTES §2).
MAX_RADIUS = 4

# KEYS[1..m]: the m band sets of the query (band i = KEYS[i]).
# ARGV[1]: max distance d; ARGV[1+i]: the query's remaining bits for band i (decimal, < 2**53).
# Returns a flat array: band index (0-based), stored remaining bits (string), distance, ...
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
local out = {}
for i = 1, #KEYS do
  local q = tonumber(ARGV[i + 1])
  local qhi = math.floor(q / TWO32)
  local qlo = q - qhi * TWO32
  local members = redis.call('SMEMBERS', KEYS[i])
  for _, s in ipairs(members) do
    local r = tonumber(s)
    local hi = math.floor(r / TWO32)
    local lo = r - hi * TWO32
    local dist = popcount(bit.bxor(hi, qhi)) + popcount(bit.bxor(lo, qlo))
    if dist <= d then
      out[#out + 1] = i - 1
      out[#out + 1] = s
      out[#out + 1] = dist
    end
  end
end
return out
"""

# KEYS[1]: lock key. ARGV[1]: the token that SET NX wrote. Deletes only our own lock.
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Candidate:
    key: str
    phash: int
    distance: int


class ResultIndex(Protocol):
    """Finds earlier results whose pHash is near a query. Raises IndexUnavailable when down."""

    def candidates(self, namespace: str, phash: int, *, limit: int = 8) -> list[Candidate]: ...
    def record(self, namespace: str, key: str, phash: int, *, created_at: float) -> None: ...
    def ping(self) -> None: ...


class Locker(Protocol):
    """Short-lived named locks for single flight. Raises IndexUnavailable when down."""

    def try_lock(self, namespace: str, digest: str, *, ttl_ms: int) -> str | None: ...
    def unlock(self, namespace: str, digest: str, token: str) -> None: ...


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


def bands_for_radius(radius: int) -> list[Band]:
    """m = radius + 1 bands covering the 64 bits, sizes as equal as possible."""
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"Hamming radius must be 0..{MAX_RADIUS}, got {radius}")
    m = radius + 1
    out, start = [], 0
    for i in range(m):
        length = PHASH_BITS // m + (1 if i < PHASH_BITS % m else 0)
        out.append(Band(start, length))
        start += length
    return out


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
    """redis-py client that fails fast: redis-py's defaults retry and wait ~4-10 s (NOTES §4)."""
    return redis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=0.2,
        socket_timeout=0.5,
        health_check_interval=0,
    )


class RedisResultIndex:
    """`ResultIndex` and `Locker` on one Redis connection pool."""

    def __init__(self, client: redis.Redis, *, radius: int = 4, breaker_cooldown: float = 2.0,
                 max_keys_per_phash: int = MAX_KEYS_PER_PHASH) -> None:
        self.client = client
        self.radius = radius
        self.bands = bands_for_radius(radius)
        self.max_keys_per_phash = max_keys_per_phash
        self.breaker = CircuitBreaker(breaker_cooldown)
        self._filter = client.register_script(_FILTER_LUA)
        self._unlock = client.register_script(_UNLOCK_LUA)

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
        return [redis_keys.band(ns, self.radius, i, b.value(phash)) for i, b in enumerate(self.bands)]

    # ResultIndex ---------------------------------------------------------------------------
    def candidates(self, namespace: str, phash: int, *, limit: int = 8) -> list[Candidate]:
        """Result keys whose pHash is within the radius, nearest first, newest first per pHash."""
        keys = self._band_keys(namespace, phash)
        args = [self.radius] + [b.rest(phash) for b in self.bands]

        def lookup() -> list[Candidate]:
            flat = self._filter(keys=keys, args=args)
            found: dict[int, int] = {}
            for i in range(0, len(flat), 3):
                band = self.bands[int(flat[i])]
                h = band.join(band.value(phash), int(flat[i + 1]))
                found[h] = int(flat[i + 2])
            if not found:
                return []
            ordered = sorted(found.items(), key=lambda kv: (kv[1], kv[0]))
            pipe = self.client.pipeline(transaction=False)
            for h, _ in ordered:
                pipe.zrevrange(redis_keys.phash_members(namespace, format_phash(h)), 0, limit - 1)
            out: list[Candidate] = []
            for (h, dist), members in zip(ordered, pipe.execute()):
                out.extend(Candidate(m.decode(), h, dist) for m in members)
            return out[:limit]

        return self._call("candidates", lookup)

    def record(self, namespace: str, key: str, phash: int, *, created_at: float) -> None:
        """Add a stored result to the index (idempotent). Call only once the result is stored."""
        ph_key = redis_keys.phash_members(namespace, format_phash(phash))

        def write() -> None:
            # one MULTI/EXEC: a crash never leaves a band entry without its key list
            pipe = self.client.pipeline(transaction=True)
            for band_key, band in zip(self._band_keys(namespace, phash), self.bands):
                pipe.sadd(band_key, band.rest(phash))
            pipe.zadd(ph_key, {key: created_at}, nx=True)
            pipe.zremrangebyrank(ph_key, 0, -(self.max_keys_per_phash + 1))
            pipe.execute()

        self._call("record", write)

    def record_many(self, items: Iterable[tuple[str, str, int, float]], *, batch: int = 1000) -> int:
        """Record (namespace, key, phash, created_at) tuples in pipelined batches; returns count."""
        n = 0
        pipe = self.client.pipeline(transaction=False)
        for ns, key, phash, created in items:
            for band_key, band in zip(self._band_keys(ns, phash), self.bands):
                pipe.sadd(band_key, band.rest(phash))
            ph_key = redis_keys.phash_members(ns, format_phash(phash))
            pipe.zadd(ph_key, {key: created}, nx=True)
            pipe.zremrangebyrank(ph_key, 0, -(self.max_keys_per_phash + 1))
            n += 1
            if n % batch == 0:
                self._call("record_many", pipe.execute)
        self._call("record_many", pipe.execute)
        return n

    def clear(self) -> int:
        """Delete every index key (all namespaces and radii); locks are left alone."""
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

    # Locker --------------------------------------------------------------------------------
    def try_lock(self, namespace: str, digest: str, *, ttl_ms: int) -> str | None:
        """Take the single-flight lock for a content digest; the token, or None if held."""
        token = secrets.token_hex(16)
        ok = self._call("lock", lambda: self.client.set(redis_keys.lock(namespace, digest), token,
                                                       nx=True, px=ttl_ms))
        return token if ok else None

    def unlock(self, namespace: str, digest: str, token: str) -> None:
        """Release our lock (compare-and-delete: never someone else's after our TTL ran out)."""
        self._call("unlock", lambda: self._unlock(keys=[redis_keys.lock(namespace, digest)], args=[token]))
