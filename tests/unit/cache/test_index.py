from __future__ import annotations

import random
import threading
import time

import pytest
import redis

from cache import redis_keys
from cache.errors import IndexUnavailable
from cache.index import CircuitBreaker, RedisResultIndex, bands_for_radius
from tests.servers import free_port

NS = "abcd"


def key(i: int) -> str:
    return f"{NS}{i:028d}".replace("0", "a").replace("1", "b").replace("8", "c").replace("9", "d")


def flip(h: int, bits: list[int]) -> int:
    for b in bits:
        h ^= 1 << b
    return h


@pytest.fixture
def index(redis_url: str) -> RedisResultIndex:
    return RedisResultIndex.from_url(redis_url, radius=4)


def test_bands_cover_64_bits_and_roundtrip() -> None:
    rng = random.Random(0)
    for radius in range(5):
        bands = bands_for_radius(radius)
        assert len(bands) == radius + 1
        assert sum(b.length for b in bands) == 64
        for _ in range(200):
            h = rng.getrandbits(64)
            for b in bands:
                assert b.join(b.value(h), b.rest(h)) == h
                assert b.rest(h) < 2**53  # exact in Lua's doubles
    with pytest.raises(ValueError):
        bands_for_radius(5)


def test_finds_every_hash_within_radius_and_none_beyond(index: RedisResultIndex) -> None:
    rng = random.Random(1)
    query = rng.getrandbits(64)
    near = {}
    for i in range(60):  # distances 0..4, random bit positions (crossing band borders)
        d = i % 5
        near[key(i)] = (flip(query, rng.sample(range(64), d)), d)
    far = {key(100 + i): flip(query, rng.sample(range(64), 5 + i % 10)) for i in range(60)}
    noise = {key(200 + i): rng.getrandbits(64) for i in range(2000)}
    for k, (h, _) in near.items():
        index.record(NS, k, h, created_at=1.0)
    for k, h in {**far, **noise}.items():
        index.record(NS, k, h, created_at=1.0)
    found = index.candidates(NS, query, limit=1000)
    got = {c.key: c.distance for c in found}
    assert {k: d for k, (_, d) in near.items()} == {k: v for k, v in got.items() if k in near}
    assert not set(got) & set(far)
    assert all(c.distance <= 4 for c in found)
    assert [c.distance for c in found] == sorted(c.distance for c in found)  # nearest first


def test_lua_filter_matches_brute_force(index: RedisResultIndex) -> None:
    rng = random.Random(2)
    base = rng.getrandbits(64)
    # non-uniform: a "template" cluster sharing most bits, plus uniform noise
    hashes = {key(i): flip(base, rng.sample(range(64), rng.randint(0, 8))) for i in range(500)}
    hashes.update({key(1000 + i): rng.getrandbits(64) for i in range(500)})
    for k, h in hashes.items():
        index.record(NS, k, h, created_at=float(hash(k) % 1000))
    for _ in range(20):
        q = flip(base, rng.sample(range(64), rng.randint(0, 5)))
        expected = {k for k, h in hashes.items() if bin(h ^ q).count("1") <= 4}
        got = {c.key for c in index.candidates(NS, q, limit=10_000)}
        assert got == expected


def test_sets_stay_intsets(index: RedisResultIndex, redis_client: redis.Redis) -> None:
    rng = random.Random(3)
    for i in range(300):
        index.record(NS, key(i), rng.getrandbits(64), created_at=1.0)
    band_keys = list(redis_client.scan_iter(match=f"{redis_keys.PREFIX}band:*", count=1000))
    assert band_keys
    assert {redis_client.object("encoding", k) for k in band_keys} == {b"intset"}


def test_same_phash_lists_newest_first_and_capped(redis_url: str) -> None:
    idx = RedisResultIndex.from_url(redis_url, radius=4, max_keys_per_phash=5)
    for i in range(8):
        idx.record(NS, key(i), 12345, created_at=float(i))
    got = [c.key for c in idx.candidates(NS, 12345, limit=10)]
    assert got == [key(i) for i in (7, 6, 5, 4, 3)]
    assert [c.key for c in idx.candidates(NS, 12345, limit=2)] == [key(7), key(6)]


def test_record_is_idempotent(index: RedisResultIndex, redis_client: redis.Redis) -> None:
    index.record(NS, key(1), 42, created_at=1.0)
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    index.record(NS, key(1), 42, created_at=2.0)
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before


def test_namespaces_are_separate(index: RedisResultIndex) -> None:
    index.record(NS, key(1), 42, created_at=1.0)
    assert index.candidates("wxyz", 42) == []
    assert [c.key for c in index.candidates(NS, 42)] == [key(1)]


def test_clear_removes_index_but_not_locks(index: RedisResultIndex, redis_client: redis.Redis) -> None:
    index.record(NS, key(1), 42, created_at=1.0)
    token = index.try_lock(NS, "d" * 64, ttl_ms=10_000)
    assert token
    assert index.clear() > 0
    assert index.candidates(NS, 42) == []
    assert redis_client.exists(redis_keys.lock(NS, "d" * 64))


def test_lock_single_holder_and_compare_and_delete(index: RedisResultIndex) -> None:
    digest = "e" * 64
    t1 = index.try_lock(NS, digest, ttl_ms=10_000)
    assert t1 and index.try_lock(NS, digest, ttl_ms=10_000) is None
    index.unlock(NS, digest, "not-my-token")  # must not release someone else's lock
    assert index.try_lock(NS, digest, ttl_ms=10_000) is None
    index.unlock(NS, digest, t1)
    assert index.try_lock(NS, digest, ttl_ms=10_000)


def test_lock_expires(index: RedisResultIndex) -> None:
    digest = "f" * 64
    assert index.try_lock(NS, digest, ttl_ms=100)
    time.sleep(0.15)
    assert index.try_lock(NS, digest, ttl_ms=100)  # a crashed holder never blocks forever


def test_lock_is_exclusive_under_concurrency(index: RedisResultIndex) -> None:
    tokens: list[str | None] = []
    barrier = threading.Barrier(20)

    def grab() -> None:
        barrier.wait()
        tokens.append(index.try_lock(NS, "a" * 64, ttl_ms=10_000))

    threads = [threading.Thread(target=grab) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for t in tokens if t) == 1


def test_redis_down_fails_fast_and_breaker_opens() -> None:
    idx = RedisResultIndex.from_url(f"redis://127.0.0.1:{free_port()}/0", breaker_cooldown=30)
    t0 = time.perf_counter()
    with pytest.raises(IndexUnavailable):
        idx.candidates(NS, 1)
    assert time.perf_counter() - t0 < 1.0  # no retries, no 5 s default timeouts
    assert idx.breaker.is_open
    t0 = time.perf_counter()
    for op in (lambda: idx.record(NS, key(1), 1, created_at=1.0), lambda: idx.try_lock(NS, "a" * 64, ttl_ms=1),
               idx.ping):
        with pytest.raises(IndexUnavailable, match="circuit open"):
            op()
    assert time.perf_counter() - t0 < 0.05


def test_breaker_recovers_after_cooldown(redis_server) -> None:
    now = [0.0]
    idx = RedisResultIndex.from_url(redis_server.url)
    idx.breaker = CircuitBreaker(2.0, clock=lambda: now[0])
    idx.breaker.failure()
    with pytest.raises(IndexUnavailable):
        idx.ping()
    now[0] = 2.5
    idx.ping()  # half-open probe succeeds and closes the breaker
    assert not idx.breaker.is_open


def test_hung_redis_times_out_quickly() -> None:
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts the TCP connection, never answers
    try:
        idx = RedisResultIndex.from_url(f"redis://127.0.0.1:{srv.getsockname()[1]}/0")
        t0 = time.perf_counter()
        with pytest.raises(IndexUnavailable):
            idx.ping()
        assert time.perf_counter() - t0 < 1.5
    finally:
        srv.close()
