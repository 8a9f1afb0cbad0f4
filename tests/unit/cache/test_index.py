from __future__ import annotations

import random
import threading

import pytest
import redis

from cache import redis_keys
from cache.errors import IndexUnavailable
from cache.index import BANDS, MAX_RADIUS, CircuitBreaker, RedisResultIndex, probe_radius
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
    assert [b.length for b in BANDS] == [22, 21, 21]
    assert sum(b.length for b in BANDS) == 64
    for _ in range(200):
        h = rng.getrandbits(64)
        for b in BANDS:
            assert b.join(b.value(h), b.rest(h)) == h
            assert b.rest(h) < 2**53  # exact in Lua's doubles


def test_probe_radius_is_pigeonhole_bound() -> None:
    # d bits spread over 3 bands: one band differs in at most d // 3 bits
    assert [probe_radius(d) for d in range(MAX_RADIUS + 1)] == [0, 0, 0, 1, 1, 1]
    for bad in (-1, MAX_RADIUS + 1):
        with pytest.raises(ValueError):
            probe_radius(bad)
    with pytest.raises(ValueError):
        RedisResultIndex(redis.Redis(), radius=MAX_RADIUS + 1)
    values = list(BANDS[1].neighbours(0b101, 1))
    assert values[0] == (0b101, 0) and len(values) == 1 + BANDS[1].length
    assert {bin(v ^ 0b101).count("1") for v, bits in values[1:]} == {1}


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


def test_lua_filter_matches_brute_force_for_every_radius(redis_url: str) -> None:
    """Recorded once (d = 4); every radius finds exactly the brute-force answer from the same
    keys, so changing OCR_HAMMING_DISTANCE needs no reindex."""
    index = RedisResultIndex.from_url(redis_url, radius=4, max_keys_per_phash=10_000)
    rng = random.Random(2)
    base = rng.getrandbits(64)
    # non-uniform: a "template" cluster sharing most bits, plus uniform noise
    hashes = {key(i): flip(base, rng.sample(range(64), rng.randint(0, 8))) for i in range(500)}
    hashes.update({key(1000 + i): rng.getrandbits(64) for i in range(500)})
    for k, h in hashes.items():
        index.record(NS, k, h, created_at=float(hash(k) % 1000))
    queries = [flip(base, rng.sample(range(64), rng.randint(0, 6))) for _ in range(20)]
    for radius in range(MAX_RADIUS + 1):
        other = RedisResultIndex.from_url(redis_url, radius=radius)
        for q in queries:
            expected = {k: bin(h ^ q).count("1") for k, h in hashes.items() if bin(h ^ q).count("1") <= radius}
            got = {c.key: c.distance for c in other.candidates(NS, q, limit=10_000)}
            assert got == expected, f"radius {radius}"


def test_sets_stay_intsets(index: RedisResultIndex, redis_client: redis.Redis) -> None:
    rng = random.Random(3)
    for i in range(300):
        index.record(NS, key(i), rng.getrandbits(64), created_at=1.0)
    band_keys = list(redis_client.scan_iter(match=f"{redis_keys.PREFIX}b:*", count=1000))
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


def test_clear_removes_the_index_only(index: RedisResultIndex, redis_client: redis.Redis) -> None:
    index.record(NS, key(1), 42, created_at=1.0)
    redis_client.set("rq:queue-like:other", "x")  # the job queue's keys are not the index's
    assert index.clear() > 0
    assert index.candidates(NS, 42) == []
    assert redis_client.exists("rq:queue-like:other")


class _FakeServer:
    """A TCP listener that counts connections and either drops them at once or never answers:
    how a crashed or a hung Redis looks to a client."""

    def __init__(self, *, answer: bool) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.drop = not answer
        self.accepted = 0
        self._held: list = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.drop:
                conn.close()
            else:
                self._held.append(conn)  # accepted, never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.mark.parametrize("answer", [False, True], ids=["crashed", "hung"])
def test_redis_failure_no_retries_then_breaker_stops_calls(answer: bool) -> None:
    """One connection attempt (redis-py's default would retry 10 times), then the open breaker
    keeps every operation off the network until its cooldown ends."""
    server = _FakeServer(answer=answer)
    try:
        idx = RedisResultIndex.from_url(f"redis://127.0.0.1:{server.port}/0", breaker_cooldown=3600)
        with pytest.raises(IndexUnavailable):
            idx.candidates(NS, 1)
        assert server.accepted == 1 and idx.breaker.is_open
        for op in (lambda: idx.record(NS, key(1), 1, created_at=1.0), idx.ping, lambda: idx.candidates(NS, 1)):
            with pytest.raises(IndexUnavailable, match="circuit open"):
                op()
        assert server.accepted == 1
    finally:
        server.close()


def test_client_fails_fast_by_configuration() -> None:
    # redis-py 8 defaults: 10 retries with backoff, 5 s timeouts (docs/facts.md §4)
    idx = RedisResultIndex.from_url("redis://127.0.0.1:1/0")
    kw = idx.client.connection_pool.connection_kwargs
    assert kw["socket_connect_timeout"] == 0.2 and kw["socket_timeout"] == 0.5
    assert kw["retry"].get_retries() == 0


def test_refused_connection_is_unavailable() -> None:
    idx = RedisResultIndex.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(IndexUnavailable):
        idx.ping()


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


def test_unstable_query_bits_are_not_counted(index: RedisResultIndex) -> None:
    """Bits in `unstable` may differ freely; every other bit counts; distance is the full one."""
    rng = random.Random(4)
    for trial in range(30):
        query = rng.getrandbits(64)
        unstable_bits = rng.sample(range(64), 4)
        unstable = sum(1 << b for b in unstable_bits)
        counted = [b for b in range(64) if b not in unstable_bits]
        stored = {
            key(10 * trial): flip(query, unstable_bits + rng.sample(counted, 4)),       # 8 bits, 4 counted
            key(10 * trial + 1): flip(query, unstable_bits[:2] + rng.sample(counted, 2)),
            key(10 * trial + 2): flip(query, rng.sample(counted, 5)),                   # 5 counted: too far
        }
        for k, h in stored.items():
            index.record(NS, k, h, created_at=1.0)
        got = {c.key: c.distance for c in index.candidates(NS, query, limit=100, unstable=unstable)}
        assert got.get(key(10 * trial)) == 8 and got.get(key(10 * trial + 1)) == 4
        assert key(10 * trial + 2) not in got
        plain = {c.key for c in index.candidates(NS, query, limit=100)}
        assert key(10 * trial) not in plain and key(10 * trial + 1) in plain
    with pytest.raises(ValueError):
        index.candidates(NS, 0, unstable=(1 << 7) - 1)  # 7 bits: too many buckets


def test_unstable_lookup_matches_brute_force(redis_url: str) -> None:
    # uncapped key lists: many of these hashes are equal, and the cap is tested elsewhere
    index = RedisResultIndex.from_url(redis_url, max_keys_per_phash=10_000)
    rng = random.Random(6)
    base = rng.getrandbits(64)
    hashes = {key(i): flip(base, rng.sample(range(64), rng.randint(0, 10))) for i in range(800)}
    for k, h in hashes.items():
        index.record(NS, k, h, created_at=1.0)
    for _ in range(20):
        q = flip(base, rng.sample(range(64), rng.randint(0, 6)))
        unstable = sum(1 << b for b in rng.sample(range(64), 4))
        expected = {k for k, h in hashes.items() if bin((h ^ q) & ~unstable).count("1") <= 4}
        assert {c.key for c in index.candidates(NS, q, limit=10_000, unstable=unstable)} == expected


def test_limit_keeps_the_nearest(index: RedisResultIndex) -> None:
    rng = random.Random(9)
    query = rng.getrandbits(64)
    by_distance = {}
    for i in range(40):  # 8 hashes at each distance 0..4
        d = i % 5
        h = flip(query, rng.sample(range(64), d)) if d else query
        by_distance.setdefault(d, set()).add(key(i))
        index.record(NS, key(i), h, created_at=float(i))
    got = index.candidates(NS, query, limit=12)
    assert len(got) == 12
    assert {c.key for c in got[:8]} == by_distance[0] and all(c.distance == 1 for c in got[8:])


def test_fine_hash_ranks_look_alikes_that_share_a_phash(index: RedisResultIndex) -> None:
    """Issue 16 item 6: pages of one template share a pHash; newest first, the page a copy was
    made of fell behind its look-alikes. A recorded fine hash puts it first."""
    rng = random.Random(3)
    fines = [rng.randbytes(72) for _ in range(12)]
    for i, fine in enumerate(fines):
        index.record(NS, key(i), 777, created_at=float(i), fine=fine)
    index.record(NS, key(12), 777, created_at=100.0)  # recorded without one (before fine hashes)
    query = bytearray(fines[0])
    query[0] ^= 0b101  # 2 bits from result 0's
    assert key(0) not in [c.key for c in index.candidates(NS, 777, limit=8)]  # crowded out
    ranked = index.candidates(NS, 777, limit=8, fine=bytes(query))
    assert ranked[0].key == key(0) and ranked[0].fine_distance == 2
    assert len(ranked) == 8 and all(c.fine_distance is not None and c.fine_distance > 200 for c in ranked[1:])
    everything = index.candidates(NS, 777, limit=13, fine=bytes(query))
    assert everything[-1].key == key(12) and everything[-1].fine_distance is None  # unknown: last
